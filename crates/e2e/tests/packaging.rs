//! The container image and the compose files, checked without a Docker engine (none runs here):
//! the Dockerfile's stages, user and build script, hadolint (scripts/hadolint.sh), the libraries
//! the binary links against what the runtime image carries, the compose files against bizon's
//! (services, ports), Compose's own validation (scripts/compose.sh: `docker-compose config`), the
//! files they mount, and the pipeline compose file's consistency with its bizon config (roles,
//! lanes, Prometheus targets), whose config also validates and runs with the real binary against
//! the local PostgreSQL and RabbitMQ. The release build itself (scripts/release.sh: stripped size,
//! glibc, libraries) runs from .ci/run after the benchmarks, which build the same binary.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(docs.len(), 1, "{rel}: one document");
    docs.remove(0)
}

/// bizon-core's compose files (scripts/queues/*.yml, scripts/backend/postgres-compose.yml): each
/// service with its container name (if set) and published ports, which ours keep.
type Service = (&'static str, Option<&'static str>, &'static [&'static str]);
const BIZON_COMPOSE: &[(&str, &[Service])] = &[
    (
        "scripts/kafka-compose.yml",
        &[
            ("zookeeper", None, &[]),
            ("kafka-ui", Some("kafka-ui"), &["9000:8080"]),
            ("kafka", None, &["9092:9092", "9997:9997"]),
        ],
    ),
    (
        "scripts/redpanda-compose.yml",
        &[
            ("redpanda-0", Some("redpanda-0"), &["18081:18081", "18082:18082", "19092:19092", "19644:9644"]),
            ("console", Some("redpanda-console"), &["8080:8080"]),
        ],
    ),
    ("scripts/rabbitmq-compose.yml", &[("rabbitmq", Some("rabbitmq"), &["5672:5672", "15672:15672"])]),
    ("scripts/postgres-compose.yml", &[("db", None, &["5432:5432"]), ("adminer", None, &["8080:8080"])]),
];

const PIPELINE: &str = "deploy/compose/pipeline.yml";

fn compose_files() -> Vec<&'static str> {
    BIZON_COMPOSE.iter().map(|(f, _)| *f).chain([PIPELINE]).collect()
}

fn services(compose: &Yaml) -> Vec<(&str, &Yaml)> {
    compose["services"].as_hash().expect("services").iter().map(|(k, v)| (k.as_str().unwrap(), v)).collect()
}

/// A list of scalars (ports may be numbers) as strings.
fn scalars(y: &Yaml) -> Vec<String> {
    match y {
        Yaml::BadValue => Vec::new(),
        _ => y
            .as_vec()
            .unwrap_or_else(|| panic!("a list: {y:?}"))
            .iter()
            .map(|v| match v {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                other => panic!("a scalar: {other:?}"),
            })
            .collect(),
    }
}

#[test]
fn the_compose_files_keep_bizons_services_and_ports() {
    for (file, expected) in BIZON_COMPOSE {
        let compose = yaml(file);
        assert!(compose["version"].is_badvalue(), "{file}: no obsolete `version:`");
        let found = services(&compose);
        let names: Vec<&str> = found.iter().map(|(n, _)| *n).collect();
        let want: Vec<&str> = expected.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(names, want, "{file}: bizon's services");
        for ((name, service), (_, container, ports)) in found.iter().zip(expected.iter()) {
            let image = service["image"].as_str().unwrap_or_default();
            assert!(!image.is_empty() && !image.contains(' '), "{file}: {name} has an image: {image:?}");
            assert_eq!(service["container_name"].as_str(), *container, "{file}: {name}'s container name");
            assert_eq!(scalars(&service["ports"]), *ports, "{file}: {name}'s ports are bizon's");
        }
    }
}

#[test]
fn docker_compose_validates_every_compose_file() {
    let files: Vec<PathBuf> = compose_files().iter().map(|f| root().join(f)).collect();
    let out = Command::new("bash").arg(root().join("scripts/compose.sh")).args(&files).output().unwrap();
    assert!(out.status.success(), "docker-compose config: {}\n{}", stdout(&out), stderr(&out));
    // the validator refuses what Compose refuses (a service depending on an undefined one)
    let s = TempDir::new("compose-bad");
    let bad = s.join("bad.yml");
    std::fs::write(&bad, "services:\n  a:\n    image: busybox\n    depends_on: [b]\n").unwrap();
    let out = Command::new("bash").arg(root().join("scripts/compose.sh")).arg(&bad).output().unwrap();
    assert!(!out.status.success() && stderr(&out).contains("undefined"), "{}", stderr(&out));
}

#[test]
fn every_file_a_compose_file_mounts_or_builds_from_exists() {
    let mut mounts = 0;
    for file in compose_files() {
        let compose = yaml(file);
        let dir = root().join(file).parent().unwrap().to_path_buf();
        let named: BTreeSet<&str> =
            compose["volumes"].as_hash().map(|h| h.keys().map(|k| k.as_str().unwrap()).collect()).unwrap_or_default();
        for (name, service) in services(&compose) {
            for volume in scalars(&service["volumes"]) {
                let source = volume.split(':').next().unwrap();
                if source.starts_with('.') || source.starts_with('/') {
                    let path = dir.join(source);
                    assert!(path.is_file(), "{file}: {name} mounts {source}, missing at {}", path.display());
                    mounts += 1;
                } else {
                    assert!(named.contains(source), "{file}: {name}'s volume {source} is declared");
                }
            }
            if let Some(context) = service["build"]["context"].as_str() {
                let dockerfile = dir.join(context).join("Dockerfile");
                assert!(dockerfile.is_file(), "{file}: {name} builds from {}", dockerfile.display());
            }
        }
    }
    assert!(mounts >= 4, "the pipeline mounts its bizon config and prometheus.yml ({mounts} mounts)");
}

/// The pipeline compose file's bizon services: name → role (`--role` of `bizon run`).
fn bizon_services(compose: &Yaml) -> BTreeMap<String, String> {
    let mut roles = BTreeMap::new();
    for (name, service) in services(compose) {
        let command = scalars(&service["command"]);
        if command.first().map(String::as_str) != Some("run") {
            continue;
        }
        let role = command.iter().skip_while(|a| *a != "--role").nth(1).expect("a --role").clone();
        roles.insert(name.to_owned(), role);
    }
    roles
}

/// The bizon config every bizon service of the pipeline mounts (one file for all), as a path in
/// the repository, and the environment the services give it.
fn pipeline_config(compose: &Yaml) -> (String, BTreeMap<String, String>) {
    let mut configs = BTreeSet::new();
    let mut envs = BTreeSet::new();
    for name in bizon_services(compose).keys() {
        let service = &compose["services"][name.as_str()];
        let command = scalars(&service["command"]);
        let mounted = &command[1];
        let volume = scalars(&service["volumes"])
            .into_iter()
            .find(|v| v.split(':').nth(1) == Some(mounted.as_str()))
            .unwrap_or_else(|| panic!("{name} mounts its config {mounted}"));
        configs.insert(volume.split(':').next().unwrap().trim_start_matches("./").to_owned());
        let env: BTreeMap<String, String> = service["environment"]
            .as_hash()
            .expect("environment")
            .iter()
            .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.as_str().unwrap().to_owned()))
            .collect();
        envs.insert(env);
    }
    assert_eq!(configs.len(), 1, "every bizon process reads the same config: {configs:?}");
    assert_eq!(envs.len(), 1, "and the same environment: {envs:?}");
    (format!("deploy/compose/{}", configs.pop_first().unwrap()), envs.pop_first().unwrap())
}

#[test]
fn the_pipeline_runs_one_producer_and_a_consumer_per_lane_after_postgres_and_rabbitmq() {
    let compose = yaml(PIPELINE);
    let roles = bizon_services(&compose);
    let count = |role: &str| roles.values().filter(|r| *r == role).count();
    assert_eq!((count("producer"), count("consumer"), roles.len()), (1, 2, 3), "{roles:?}");
    let (config, _) = pipeline_config(&compose);
    let cfg = yaml(&config);
    assert_eq!(cfg["engine"]["queue"]["config"]["lanes"].as_i64(), Some(2), "a consumer per lane");
    assert_eq!(cfg["engine"]["queue"]["type"].as_str(), Some("rabbitmq"));
    assert_eq!(cfg["engine"]["backend"]["type"].as_str(), Some("postgres"));
    // the config reaches the broker and the database by their service names
    let all = services(&compose);
    let names: BTreeSet<&str> = all.iter().map(|(n, _)| *n).collect();
    for host in [&cfg["engine"]["queue"]["config"]["queue"]["host"], &cfg["engine"]["backend"]["config"]["host"]] {
        assert!(names.contains(host.as_str().unwrap()), "{host:?} is a service of {names:?}");
    }
    for (name, service) in &all {
        if roles.contains_key(*name) {
            for dependency in ["postgres", "rabbitmq"] {
                let condition = service["depends_on"][dependency]["condition"].as_str();
                assert_eq!(condition, Some("service_healthy"), "{name} waits for {dependency}");
            }
            // no shell nor HTTP client in bizon's image: a healthcheck could not run
            assert!(service["healthcheck"].is_badvalue(), "{name}");
            assert_eq!(service["restart"].as_str(), Some("on-failure"), "{name}: a failed run restarts and resumes");
        } else {
            let image = service["image"].as_str().unwrap_or_default();
            assert!(image.contains(':'), "{name}: a tagged image: {image:?}");
        }
    }
    for dependency in ["postgres", "rabbitmq"] {
        assert!(
            !compose["services"][dependency]["healthcheck"]["test"].is_badvalue(),
            "{dependency} has a healthcheck"
        );
    }
    // the consumers share the volume their lane files go to, owned by the image's user
    let output = cfg["destination"]["config"]["path"].as_str().unwrap();
    for (name, role) in &roles {
        if role == "consumer" {
            let volumes = scalars(&compose["services"][name.as_str()]["volumes"]);
            assert!(
                volumes
                    .iter()
                    .any(|v| output.starts_with(&format!("{}/", v.split(':').nth(1).unwrap())) && !v.starts_with('.')),
                "{name} writes {output} to a named volume: {volumes:?}"
            );
        }
    }
}

#[test]
fn the_pipelines_bizon_config_validates_with_the_real_binary_in_the_services_environment() {
    let compose = yaml(PIPELINE);
    let (config, env) = pipeline_config(&compose);
    let path = root().join(&config);
    let all = env.clone();
    let run = |args: &[&str], env: &BTreeMap<String, String>| {
        let mut cmd = Command::new(bin());
        cmd.args(args).arg(&path).env_remove("RUST_LOG").current_dir(std::env::temp_dir());
        for key in all.keys() {
            cmd.env_remove(key);
        }
        cmd.envs(env);
        cmd.output().unwrap()
    };
    let out = run(&["config", "validate", "--strict"], &env);
    assert!(stdout(&out).contains("valid"), "{}", ok(&out));
    let shown: serde_json::Value = serde_json::from_str(&ok_stdout(&run(&["config", "show"], &env))).unwrap();
    assert_eq!(shown["engine"]["queue"]["config"]["lanes"], 2);
    assert_eq!(shown["engine"]["backend"]["config"]["password"], "********", "resolved from the environment, masked");
    // without the services' environment the placeholders do not resolve: the compose file must set them
    let out = run(&["config", "validate"], &BTreeMap::new());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(env.keys().any(|key| stderr(&out).contains(&format!("`{key}` is not set"))), "{}", stderr(&out));
    // and each variable the services set is one the config reads
    for key in env.keys() {
        assert!(read(&config).contains(&format!("${{{key}}}")), "{key} is a placeholder of {config}");
    }
}

#[test]
fn prometheus_scrapes_every_bizon_process_at_its_metrics_address() {
    let compose = yaml(PIPELINE);
    let (config, _) = pipeline_config(&compose);
    let cfg = yaml(&config);
    assert_eq!(cfg["monitoring"]["type"].as_str(), Some("prometheus"));
    let address = cfg["monitoring"]["config"]["address"].as_str().unwrap();
    let (host, port) = address.rsplit_once(':').unwrap();
    assert_eq!(host, "0.0.0.0", "reachable from the Prometheus container");
    let want: BTreeSet<String> = bizon_services(&compose).keys().map(|s| format!("{s}:{port}")).collect();

    let prometheus = &compose["services"]["prometheus"];
    let mount = scalars(&prometheus["volumes"])
        .into_iter()
        .find(|v| v.contains(":/etc/prometheus/prometheus.yml"))
        .expect("prometheus.yml mounted where Prometheus reads it");
    let scrape = yaml(&format!("deploy/compose/{}", mount.split(':').next().unwrap().trim_start_matches("./")));
    let jobs = scrape["scrape_configs"].as_vec().unwrap();
    let mut targets = BTreeSet::new();
    for job in jobs {
        assert!(matches!(job["metrics_path"].as_str(), None | Some("/metrics")), "{job:?}");
        for group in job["static_configs"].as_vec().unwrap() {
            targets.extend(scalars(&group["targets"]));
        }
    }
    assert_eq!(targets, want, "one target per bizon process, at its metrics port");
}

#[test]
fn the_pipelines_config_moves_every_record_once_through_one_producer_and_two_consumers() {
    // deploy/compose's bizon.yml against the local services (the compose network's names and
    // /data replaced): the topology of the compose file, run by the real binary.
    let compose = yaml(PIPELINE);
    let (config, env) = pipeline_config(&compose);
    let s = Scratch::new("compose-pipeline");
    let schema = Schema::new("compose");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let queue = format!("bizon_test_compose_{}_{}", std::process::id(), nanos % 1_000_000_000);
    let cfg = s.path("pipeline.yml");
    let text = read(&config);
    // the metrics endpoint is left out: three processes on one host cannot share its port
    let text = text[..text.find("\nmonitoring:").expect("a monitoring block")].to_owned() + "\n";
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.to_str().unwrap();
    let out = s.path("out.json");
    for (from, to) in [
        ("total: 1000000", "total: 200000".to_owned()),
        ("path: /data/records.json", format!("path: {}", out.display())),
        ("host: postgres\n", format!("host: {}\n", pg_host())),
        ("port: 5432\n", format!("port: {}\n", pg_port())),
        ("database: bizon\n", format!("database: {}\n", pg_db())),
        ("schema: bizon_state\n", format!("schema: {}\n", schema.0)),
        ("username: postgres\n", format!("username: {}\n", pg_user())),
        ("host: rabbitmq\n", "host: 127.0.0.1\n".to_owned()),
        ("queue_name: compose-pipeline\n", format!("queue_name: {queue}\n")),
    ] {
        edit_config(cfg, from, &to);
    }
    // the services' environment, through bizon's default env file (the scratch directory's .env)
    let dotenv: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    s.write(".env", &dotenv);
    two_consumers_split_one_producers_work(&s, cfg, 200_000);
}

/// A Dockerfile instruction: keyword (upper case) and arguments.
type Instruction = (String, String);
/// A build stage: its name, its base image and its instructions.
type Stage = (String, String, Vec<Instruction>);

/// The Dockerfile's instructions (continuation lines joined, comments dropped).
fn dockerfile() -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((keyword.to_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

/// The instructions of each stage, by stage name (the last one: "runtime").
fn stages() -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for (keyword, args) in dockerfile() {
        if keyword == "FROM" {
            let mut words = args.split_whitespace();
            let image = words.next().unwrap().to_owned();
            let name = match (words.next(), words.next()) {
                (Some(a), Some(n)) if a.eq_ignore_ascii_case("as") => n.to_owned(),
                _ => "runtime".to_owned(),
            };
            stages.push((name, image, Vec::new()));
        } else if let Some(stage) = stages.last_mut() {
            stage.2.push((keyword, args));
        }
    }
    stages
}

fn arg_default(name: &str) -> String {
    dockerfile()
        .into_iter()
        .find_map(|(k, a)| (k == "ARG").then(|| a.strip_prefix(&format!("{name}=")).map(str::to_owned)).flatten())
        .unwrap_or_else(|| panic!("ARG {name}=…"))
}

#[test]
fn the_dockerfile_caches_dependencies_builds_with_release_sh_and_runs_as_non_root() {
    let stages = stages();
    let names: Vec<&str> = stages.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["skeleton", "builder", "runtime"]);

    // the builder's toolchain is the pinned one
    let toolchain = read("rust-toolchain.toml");
    let channel = toolchain.lines().find_map(|l| l.strip_prefix("channel = ")).unwrap().trim_matches('"');
    let rust_image = arg_default("RUST_IMAGE");
    assert!(rust_image.starts_with(&format!("rust:{channel}-")), "{rust_image} is rust-toolchain.toml's {channel}");

    // builder: deps.sh, the placeholders' dependency build, then the sources and release.sh
    let builder = &stages[1].2;
    let position = |pred: &dyn Fn(&Instruction) -> bool| {
        builder.iter().position(pred).unwrap_or_else(|| panic!("builder: {builder:?}"))
    };
    let deps = position(&|(k, a)| k == "RUN" && a.contains("scripts/deps.sh"));
    let skeleton = position(&|(k, a)| k == "COPY" && a.starts_with("--from=skeleton"));
    let deps_only = position(&|(k, a)| k == "RUN" && a.contains("scripts/release.sh --build-only"));
    let sources = position(&|(k, a)| k == "COPY" && a == ". .");
    let release = position(&|(k, a)| k == "RUN" && a.split("&&").any(|c| c.trim() == "scripts/release.sh"));
    assert!(deps < skeleton && skeleton < deps_only && deps_only < sources && sources < release, "{builder:?}");
    let script = read("scripts/release.sh");
    assert!(script.contains("cargo build --release --locked -p bizon\n"), "the release profile, as CI builds it");
    assert!(read(".gitignore").lines().any(|l| l == "/dist" || l == "dist/"), "dist/ is ignored");

    // runtime: distroless with the stripped binary, a numeric non-root user, the metrics port
    let (_, image, runtime) = &stages[2];
    assert_eq!(image, "${RUNTIME_IMAGE}");
    assert_eq!(arg_default("RUNTIME_IMAGE"), "gcr.io/distroless/cc-debian12:nonroot");
    let users: Vec<&str> = runtime.iter().filter(|(k, _)| k == "USER").map(|(_, a)| a.as_str()).collect();
    let user = users.last().expect("a USER");
    let uid: u32 = user.split(':').next().unwrap().parse().expect("a numeric user (runAsNonRoot checks it)");
    assert!(uid != 0, "{user}");
    assert!(runtime.iter().any(|(k, a)| k == "COPY" && a == "--from=builder /src/dist/bizon /usr/local/bin/bizon"));
    assert!(runtime.iter().any(|(k, a)| k == "ENTRYPOINT" && a == r#"["/usr/local/bin/bizon"]"#));
    assert!(runtime.iter().any(|(k, a)| k == "EXPOSE" && a == "9464"));
    let workdir = runtime.iter().rev().find(|(k, _)| k == "WORKDIR").expect("a WORKDIR").1.clone();
    assert!(
        runtime.iter().any(|(k, a)| k == "COPY" && a.contains(&format!("--chown={uid}:")) && a.ends_with(&workdir)),
        "the working directory {workdir} belongs to the user"
    );
    assert!(runtime.iter().all(|(k, _)| k != "RUN"), "distroless has no shell to RUN with");

    // the build context holds what the Dockerfile copies, and not the build outputs
    let ignore = read(".dockerignore");
    let included: Vec<&str> = ignore.lines().filter_map(|l| l.strip_prefix('!')).collect();
    for want in ["Cargo.toml", "Cargo.lock", "crates/", "scripts/deps.sh", "scripts/release.sh"] {
        assert!(included.contains(&want), ".dockerignore lets {want} in: {included:?}");
    }
    assert!(ignore.lines().any(|l| l == "*"), "everything else stays out (target/, dist/, .git)");
}

#[test]
fn hadolint_finds_nothing_in_the_dockerfile() {
    let out = Command::new("bash").arg(root().join("scripts/hadolint.sh")).output().unwrap();
    assert!(out.status.success(), "hadolint:\n{}{}", stdout(&out), stderr(&out));
    // it does lint: an untagged base image and a `cd` are findings
    let s = TempDir::new("hadolint-bad");
    let bad = s.join("Dockerfile");
    std::fs::write(&bad, "FROM debian\nRUN cd /tmp && ls\n").unwrap();
    let out = Command::new("bash").arg(root().join("scripts/hadolint.sh")).arg(&bad).output().unwrap();
    assert!(!out.status.success() && stdout(&out).contains("DL3006"), "{}", stdout(&out));
}

/// What gcr.io/distroless/cc-debian12 ships: glibc, libgcc_s, libstdc++, libgomp, OpenSSL 3.
const DISTROLESS_CC: &[&str] = &[
    "linux-vdso.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libgomp.so.1",
    "libssl.so.3",
    "libcrypto.so.3",
];

#[test]
fn the_runtime_image_carries_every_library_the_binary_links() {
    // the libraries the builder stage puts into the runtime image besides distroless' own
    let builder = &stages()[1].2;
    let copied: BTreeSet<String> = builder
        .iter()
        .filter(|(k, _)| k == "RUN")
        .flat_map(|(_, a)| a.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|w| {
            let name = w.trim_matches('"').rsplit('/').next().unwrap().to_owned();
            (name.starts_with("lib") && name.contains(".so.")).then_some(name)
        })
        .collect();
    assert!(stages()[2].2.iter().any(|(k, a)| k == "COPY" && a.starts_with("--from=builder /out/lib/ ")));
    let image: BTreeSet<String> = DISTROLESS_CC.iter().map(|s| s.to_string()).chain(copied.iter().cloned()).collect();

    // the binary of this build links like the release one (same features, same system libraries)
    let out = Command::new("objdump").args(["-p", bin()]).output().unwrap();
    let needed: BTreeSet<String> = stdout(&ok_out(out))
        .lines()
        .filter_map(|l| l.trim().strip_prefix("NEEDED").map(|n| n.trim().to_owned()))
        .collect();
    assert!(needed.contains("libssl.so.3") && needed.contains("libz.so.1"), "librdkafka's TLS and zlib: {needed:?}");
    let missing: Vec<&String> = needed.difference(&image).collect();
    assert!(missing.is_empty(), "the image lacks {missing:?} (has {image:?})");

    // release.sh refuses a binary needing anything else: its list is the image's
    let script = read("scripts/release.sh");
    let list = script.split("image_libs=\"").nth(1).unwrap().split('"').next().unwrap();
    let listed: BTreeSet<String> = list.split_whitespace().map(str::to_owned).collect();
    assert_eq!(listed, image, "scripts/release.sh's image_libs = distroless cc + what the Dockerfile copies");
}

fn ok_out(out: std::process::Output) -> std::process::Output {
    assert!(out.status.success(), "{}", stderr(&out));
    out
}
