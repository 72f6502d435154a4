# syntax=docker/dockerfile:1
# bizon's container image: the release binary (scripts/release.sh, the same script CI runs on the
# host) on gcr.io/distroless/cc-debian12, as the distroless `nonroot` user. docs/deploy.md explains
# the stages, the size budget and what the image lacks (a shell, Python for Python transforms).
#
#   docker build -t bizon .
#   docker run --rm -v "$PWD/examples:/examples:ro" bizon run /examples/dummy_to_logger.yml

# The builder's toolchain: the version rust-toolchain.toml pins (a test keeps them equal).
ARG RUST_IMAGE=rust:1.95.0-bookworm
# glibc 2.36, OpenSSL 3, libgcc_s: what the binary links, less zlib (copied below).
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# 1. The workspace's manifests with placeholder sources. Its output changes only when a manifest,
#    the lock file or the set of targets changes, so the dependency layer below is reused across
#    source edits (what cargo-chef does, in a few lines of shell).
FROM ${RUST_IMAGE} AS skeleton
WORKDIR /src
COPY . .
RUN set -eu; \
    mkdir -p /skeleton; \
    cp --parents Cargo.toml Cargo.lock crates/*/Cargo.toml /skeleton/; \
    for dir in crates/*/; do \
      for file in src/lib.rs src/main.rs $(sed -n 's/^path = "\(.*\)"$/\1/p' "${dir}Cargo.toml"); do \
        [ -f "$dir$file" ] || continue; \
        mkdir -p "/skeleton/$dir$(dirname "$file")"; \
        if [ "$file" = src/lib.rs ]; then : > "/skeleton/$dir$file"; else echo 'fn main() {}' > "/skeleton/$dir$file"; fi; \
      done; \
      if [ -f "${dir}build.rs" ]; then cp "${dir}build.rs" "/skeleton/$dir"; fi; \
    done

# 2. The build: librdkafka's C dependencies (scripts/deps.sh), then every dependency compiled
#    against the placeholders (a cached layer), then the real sources and scripts/release.sh.
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY scripts/deps.sh scripts/release.sh scripts/
RUN scripts/deps.sh
COPY --from=skeleton /skeleton/ ./
RUN scripts/release.sh --build-only
COPY . .
# The checked-out sources can be older than the placeholders' build outputs: touched, cargo sees
# them as changed and rebuilds the workspace's own crates (the dependencies stay built).
RUN find crates -name '*.rs' -exec touch {} + \
    && scripts/release.sh \
    && mkdir -p /out/lib /out/data \
    && cp -L "/usr/lib/$(gcc -dumpmachine)/libz.so.1" /out/lib/

# 3. The runtime: the stripped binary, zlib (librdkafka's compression; the Debian 12 distroless
#    images ship glibc, libgcc_s and OpenSSL but not zlib) and a writable working directory.
FROM ${RUNTIME_IMAGE}
COPY --from=builder /out/lib/ /usr/lib/
COPY --from=builder /src/dist/bizon /usr/local/bin/bizon
COPY --from=builder --chown=65532:65532 /out/data /data
# distroless' nonroot user, by number so that Kubernetes' runAsNonRoot can check it.
USER 65532:65532
# Relative paths of a config (the default SQLite backend ./bizon.db, file outputs) land here.
WORKDIR /data
# The Prometheus endpoint when the config has `monitoring: {type: prometheus, config: {address: 0.0.0.0:9464}}`.
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/bizon"]
CMD ["--help"]
