#!/usr/bin/env bash
# The release binary, as shipped: built with the workspace's release profile (the one the
# benchmarks use; no separate profile, so CI builds it once), then a stripped copy in dist/bizon.
# The container image's builder stage runs this same script (Dockerfile), so CI runs the image's
# build steps on the host. Prints the binary's size, the shared libraries it loads (ldd) and the
# oldest glibc it runs on (the highest GLIBC_ symbol version it imports, read with objdump -T),
# and fails when it needs a library the runtime image does not carry.
#
# Usage: scripts/release.sh               build, strip into dist/bizon, report
#        scripts/release.sh --build-only  only the cargo build (the image's dependency layer)
#
# Needs: the Rust toolchain, librdkafka's build dependencies (scripts/deps.sh), binutils (strip,
# objdump) and ldd. Static musl builds are not offered: the toolchain here has no musl target.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

cargo build --release --locked -p bizon
[ "${1:-}" = --build-only ] && exit 0

target=${CARGO_TARGET_DIR:-$root/target}
built=$target/release/bizon
mkdir -p dist
strip -o dist/bizon.tmp "$built"
mv -f dist/bizon.tmp dist/bizon

# What the runtime image provides (Dockerfile): gcr.io/distroless/cc-debian12 ships glibc
# (libc, libm, libpthread, libdl, librt, the loader), libgcc_s, libstdc++, libgomp and OpenSSL 3
# (libssl, libcrypto); the Dockerfile copies zlib (libz.so.1) from the builder, since the
# Debian 12 images leave it out. A library outside this list would make the image fail at start.
image_libs="linux-vdso.so.1 ld-linux-x86-64.so.2 ld-linux-aarch64.so.1 libc.so.6 libm.so.6
libpthread.so.0 libdl.so.2 librt.so.1 libgcc_s.so.1 libstdc++.so.6 libgomp.so.1 libssl.so.3
libcrypto.so.3 libz.so.1"

size=$(stat -c %s dist/bizon)
unstripped=$(stat -c %s "$built")
glibc=$(objdump -T dist/bizon | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -uV | tail -n 1)
echo "release: dist/bizon $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.1f MiB", s / 1048576 }'), stripped from $unstripped)"
echo "release: needs glibc >= $glibc (highest GLIBC_ symbol version, objdump -T)"
echo "release: shared libraries (ldd):"
ldd dist/bizon | sed 's/ (0x[0-9a-f]*)$//; s/^[[:space:]]*/  /'
missing=()
for lib in $(objdump -p dist/bizon | awk '$1 == "NEEDED" { print $2 }'); do
  case " $(echo $image_libs) " in
    *" $lib "*) ;;
    *) missing+=("$lib") ;;
  esac
done
# The image's budget: 60 MB (as `docker images` counts: uncompressed, 10^6 bytes) = the base image
# + zlib + this binary. gcr.io/distroless/cc-debian12 is 26.5 MB uncompressed: the Installed-Size of
# the Debian 12 packages it is made of (libc6 13.0 MiB, libssl3 5.9, libstdc++6 2.6, tzdata 2.5,
# libgomp1, ca-certificates, base-files, libgcc-s1, gcc-12-base, media-types, netbase: 25.1 MiB),
# rounded up to 27 MB for the generated CA bundle and the user files.
IMAGE_BUDGET=60000000
BASE_IMAGE=27000000
zlib=$(stat -L -c %s "$(ldd dist/bizon | awk '$1 == "libz.so.1" { print $3 }')")
budget=$((IMAGE_BUDGET - BASE_IMAGE - zlib))
echo "release: image ~ $(( (BASE_IMAGE + zlib + size) / 1000000 )) MB = base $BASE_IMAGE + zlib $zlib + binary $size bytes (budget $IMAGE_BUDGET; the binary may take $budget)"
if [ "$size" -gt "$budget" ]; then
  echo "release: dist/bizon ($size bytes) is over its share of the image budget ($budget bytes)" >&2
  exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "release: the runtime image lacks ${missing[*]}: add it to the Dockerfile's runtime stage and to this list" >&2
  exit 1
fi
