//! The Helm chart (deploy/helm/bizon) as `helm template` renders it: through Helm v4's own Go SDK
//! (scripts/helm.sh installs it from PyPI into a cached virtualenv; no helm binary is reachable
//! here), then read as YAML: the objects a pipeline needs, their consistency with the config they
//! carry (lanes → consumers, the monitoring address → port, probes, annotations, placeholders →
//! Secret keys), `helm lint --strict`, the Kubernetes API schemas (unknown keys refused) and the
//! real `bizon config validate` on the ConfigMap's config.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::*;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chart() -> PathBuf {
    root().join("deploy/helm/bizon")
}

/// scripts/helm.sh with `args`; the first call installs it (once for all the tests).
fn helm(args: &[&str], stdin: Option<&str>) -> Output {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let script = root().join("scripts/helm.sh");
    INSTALLED.get_or_init(|| {
        let out = Command::new("bash").arg(&script).arg("install").output().unwrap();
        assert!(out.status.success(), "scripts/helm.sh install: {}", String::from_utf8_lossy(&out.stderr));
    });
    let mut cmd = Command::new("bash");
    cmd.arg(&script).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// `helm template CHART RELEASE ARGS…`: the manifests' text, or the error.
fn try_render(release: &str, args: &[&str]) -> Result<String, String> {
    let chart = chart();
    let mut all = vec!["template", chart.to_str().unwrap(), release];
    all.extend_from_slice(args);
    let out = helm(&all, None);
    match out.status.success() {
        true => Ok(String::from_utf8(out.stdout).unwrap()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// The rendered objects, each checked to be a Kubernetes object of this release.
fn render(release: &str, args: &[&str]) -> Vec<Yaml> {
    let text = try_render(release, args).unwrap_or_else(|e| panic!("helm template failed: {e}"));
    let docs: Vec<Yaml> =
        YamlLoader::load_from_str(&text).unwrap().into_iter().filter(|d| !matches!(d, Yaml::Null)).collect();
    for d in &docs {
        assert!(d["apiVersion"].as_str().is_some_and(|v| !v.is_empty()), "apiVersion: {d:?}");
        assert!(d["kind"].as_str().is_some_and(|v| !v.is_empty()), "kind: {d:?}");
        let name = d["metadata"]["name"].as_str().expect("metadata.name");
        assert!(name.len() <= 63 && name.starts_with(release), "{name}");
        assert_eq!(d["metadata"]["labels"]["app.kubernetes.io/instance"].as_str(), Some(release), "{d:?}");
    }
    docs
}

fn kinds(docs: &[Yaml]) -> Vec<&str> {
    let mut k: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    k.sort_unstable();
    k
}

fn one<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect();
    assert_eq!(found.len(), 1, "one {kind} in {:?}", kinds(docs));
    found[0]
}

fn strs(y: &Yaml) -> Vec<&str> {
    y.as_vec().expect("a list").iter().map(|v| v.as_str().expect("a string")).collect()
}

/// The bizon config the ConfigMap carries, as text and parsed.
fn config(docs: &[Yaml]) -> (String, Yaml) {
    let text = one(docs, "ConfigMap")["data"]["pipeline.yml"].as_str().expect("data.pipeline.yml").to_owned();
    let parsed = YamlLoader::load_from_str(&text).unwrap().remove(0);
    (text, parsed)
}

/// The port of the config's `monitoring.config.address` (Prometheus), checked to listen beyond
/// loopback (the kubelet's probes and Prometheus come from outside the pod).
fn monitoring_port(cfg: &Yaml) -> i64 {
    assert_eq!(cfg["monitoring"]["type"].as_str(), Some("prometheus"));
    let address = cfg["monitoring"]["config"]["address"].as_str().expect("monitoring.config.address");
    let (host, port) = address.rsplit_once(':').unwrap();
    assert!(host == "0.0.0.0" || host == "[::]", "listens on every interface: {address}");
    port.parse().unwrap()
}

fn lanes(cfg: &Yaml) -> i64 {
    cfg["engine"]["queue"]["config"]["lanes"].as_i64().unwrap_or(1)
}

/// `${VAR}` placeholders without a default (`${VAR:-x}` has one) in the config text.
fn required_placeholders(text: &str) -> Vec<String> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(inner, _)| inner))
        .filter(|inner| !inner.contains(":-") && !inner.contains("://"))
        .map(str::to_owned)
        .collect()
}

/// Checks one pod template of `role` against the objects and the config it runs.
fn check_pod(pod: &Yaml, role: &str, docs: &[Yaml], secret: &str) {
    let (_, cfg) = config(docs);
    let port = monitoring_port(&cfg);
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"), "{pod:?}");
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));
    assert_eq!(annotations["prometheus.io/port"].as_str(), Some(port.to_string().as_str()), "annotated port");
    assert_eq!(pod["metadata"]["labels"]["app.kubernetes.io/component"].as_str(), Some(role));

    let spec = &pod["spec"];
    let security = &spec["securityContext"];
    assert_eq!(security["runAsNonRoot"].as_bool(), Some(true), "non-root: {security:?}");
    assert!(security["runAsUser"].as_i64().is_some_and(|u| u > 0), "{security:?}");
    assert_eq!(spec["automountServiceAccountToken"].as_bool(), Some(false));
    let containers = spec["containers"].as_vec().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["name"].as_str(), Some(role));
    let chart_yaml = YamlLoader::load_from_str(&std::fs::read_to_string(chart().join("Chart.yaml")).unwrap()).unwrap();
    let app_version = chart_yaml[0]["appVersion"].as_str().unwrap().to_owned();
    let image = c["image"].as_str().unwrap();
    assert!(image.ends_with(&format!(":{app_version}")) || !image.starts_with("bizon:"), "{image}");
    assert_eq!(strs(&c["command"]), ["bizon"]);
    let args = strs(&c["args"]);
    assert_eq!(args[..4], ["run", "/config/pipeline.yml", "--role", role], "{args:?}");
    assert!(args.contains(&"--no-progress"), "{args:?}");

    // the port: config address = containerPort = probes (by name) = annotation
    let ports = c["ports"].as_vec().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["containerPort"].as_i64(), Some(port), "containerPort = the monitoring address's port");
    let port_name = ports[0]["name"].as_str().unwrap();
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        let probe_port =
            get["port"].as_str().map(str::to_owned).or_else(|| get["port"].as_i64().map(|p| p.to_string()));
        assert!(
            probe_port.as_deref() == Some(port_name) || probe_port == Some(port.to_string()),
            "{probe} on the metrics port: {get:?}"
        );
    }

    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    for k in ["requests", "limits"] {
        assert!(c["resources"][k]["memory"].as_str().is_some(), "resources.{k}.memory: {:?}", c["resources"]);
    }

    // config from the ConfigMap at /config, secrets from the Secret as environment variables
    let cm = one(docs, "ConfigMap")["metadata"]["name"].as_str().unwrap();
    let volumes = spec["volumes"].as_vec().unwrap();
    let config_volume = volumes.iter().find(|v| v["configMap"]["name"].as_str() == Some(cm)).expect("the ConfigMap");
    let mount = c["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| m["name"] == config_volume["name"])
        .expect("the config volume mounted");
    assert_eq!(mount["mountPath"].as_str(), Some("/config"));
    let env_from: Vec<&str> =
        c["envFrom"].as_vec().unwrap().iter().filter_map(|e| e["secretRef"]["name"].as_str()).collect();
    assert_eq!(env_from, [secret]);
    let work = c["workingDir"].as_str().unwrap();
    assert!(
        c["volumeMounts"].as_vec().unwrap().iter().any(|m| m["mountPath"].as_str() == Some(work)),
        "the working directory is writable (read-only root filesystem)"
    );
}

#[test]
fn default_values_render_a_producer_job_a_consumer_per_lane_a_configmap_and_a_secret() {
    let docs = render("helm-default", &[]);
    assert_eq!(kinds(&docs), ["ConfigMap", "Deployment", "Job", "Secret"]);
    let (text, cfg) = config(&docs);
    assert_eq!(lanes(&cfg), 2, "the default config splits the work over 2 lanes");
    assert!(["rabbitmq", "kafka"].contains(&cfg["engine"]["queue"]["type"].as_str().unwrap()), "a broker queue");
    assert_eq!(cfg["engine"]["backend"]["type"].as_str(), Some("postgres"), "a backend every pod reaches");

    let deployment = one(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"].as_i64(), Some(lanes(&cfg)), "consumer replicas = lanes");
    assert_eq!(
        deployment["spec"]["strategy"]["type"].as_str(),
        Some("RollingUpdate"),
        "a surge consumer waits for a free lane"
    );
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    for (k, v) in selector.as_hash().unwrap() {
        assert_eq!(&deployment["spec"]["template"]["metadata"]["labels"][k.as_str().unwrap()], v, "selected by {k:?}");
    }
    let secret = one(&docs, "Secret");
    let secret_name = secret["metadata"]["name"].as_str().unwrap();
    check_pod(&deployment["spec"]["template"], "consumer", &docs, secret_name);

    let job = one(&docs, "Job");
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"].as_str(), Some("Never"));
    check_pod(&job["spec"]["template"], "producer", &docs, secret_name);

    let keys: Vec<&str> = secret["stringData"].as_hash().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
    let needed = required_placeholders(&text);
    assert!(!needed.is_empty(), "the default config reads its passwords from the Secret");
    for var in &needed {
        assert!(keys.contains(&var.as_str()), "${{{var}}} of the config is a key of the Secret: {keys:?}");
    }
}

#[test]
fn a_cronjob_producer_runs_on_its_schedule_and_image_values_are_used() {
    let docs = render(
        "helm-cron",
        &[
            "--set",
            "producer.kind=CronJob",
            "--set-string",
            "producer.schedule=*/5 * * * *",
            "--set",
            "image.repository=registry.example/bizon",
            "--set-string",
            "image.tag=1.2.3",
        ],
    );
    assert_eq!(kinds(&docs), ["ConfigMap", "CronJob", "Deployment", "Secret"]);
    let cron = one(&docs, "CronJob");
    assert_eq!(cron["spec"]["schedule"].as_str(), Some("*/5 * * * *"));
    assert_eq!(cron["spec"]["concurrencyPolicy"].as_str(), Some("Forbid"), "never two producers at once");
    assert!(cron["metadata"]["name"].as_str().unwrap().len() <= 52, "a CronJob name leaves room for its Jobs' suffix");
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"];
    let secret = one(&docs, "Secret")["metadata"]["name"].as_str().unwrap();
    check_pod(pod, "producer", &docs, secret);
    for p in [pod, &one(&docs, "Deployment")["spec"]["template"]] {
        assert_eq!(p["spec"]["containers"][0]["image"].as_str(), Some("registry.example/bizon:1.2.3"));
    }
}

#[test]
fn an_existing_secret_replaces_the_charts_own() {
    let docs = render("helm-secret", &["--set", "secret.existingSecret=pipeline-credentials"]);
    assert_eq!(kinds(&docs), ["ConfigMap", "Deployment", "Job"], "no Secret of the chart's");
    check_pod(&one(&docs, "Deployment")["spec"]["template"], "consumer", &docs, "pipeline-credentials");
    check_pod(&one(&docs, "Job")["spec"]["template"], "producer", &docs, "pipeline-credentials");
}

/// A values file whose config is the default one with `from` replaced by `to`.
fn values_with_config_edit(s: &TempDir, from: &str, to: &str) -> String {
    let values = std::fs::read_to_string(chart().join("values.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&values).unwrap();
    let config = docs[0]["config"].as_str().unwrap();
    assert!(config.contains(from), "{from:?} in the default config");
    let config = config.replace(from, to);
    let indented: String = config.lines().map(|l| format!("  {l}\n")).collect();
    let path = s.join("values.yml");
    std::fs::write(&path, format!("config: |\n{indented}")).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn consumer_replicas_follow_the_lanes_or_an_autoscaler_on_the_lane_gauges() {
    let s = TempDir::new("helm-lanes");
    let four = values_with_config_edit(&s, "lanes: 2", "lanes: 4");
    let docs = render("helm-lanes", &["-f", &four]);
    assert_eq!(one(&docs, "Deployment")["spec"]["replicas"].as_i64(), Some(4));
    assert!(!kinds(&docs).contains(&"HorizontalPodAutoscaler"), "no autoscaler unless enabled");
    let docs = render("helm-lanes", &["-f", &four, "--set", "consumer.replicas=3"]);
    assert_eq!(one(&docs, "Deployment")["spec"]["replicas"].as_i64(), Some(3), "fewer consumers than lanes work");
    let docs = render("helm-lanes", &["--set", "consumer.replicas=3"]);
    assert_eq!(one(&docs, "Deployment")["spec"]["replicas"].as_i64(), Some(3), "a standby beyond the lanes waits");
    // the autoscaler owns the replicas: it targets the consumers, up to the lanes, on both gauges
    let docs = render("helm-lanes", &["-f", &four, "--set", "consumer.autoscaling.enabled=true"]);
    let deployment = one(&docs, "Deployment");
    assert!(deployment["spec"]["replicas"].is_badvalue(), "no fixed replicas under an autoscaler");
    let hpa = one(&docs, "HorizontalPodAutoscaler");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"]);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"].as_str(), Some("Deployment"));
    assert_eq!((hpa["spec"]["minReplicas"].as_i64(), hpa["spec"]["maxReplicas"].as_i64()), (Some(1), Some(4)));
    let metrics: Vec<&str> =
        hpa["spec"]["metrics"].as_vec().unwrap().iter().filter_map(|m| m["pods"]["metric"]["name"].as_str()).collect();
    // the names bizon's exporter serves (crates/cli/src/telemetry/mod.rs)
    assert_eq!(metrics, ["bizon_lane_pages_waiting", "bizon_lanes_unclaimed"]);
    let telemetry = std::fs::read_to_string(root().join("crates/cli/src/telemetry/mod.rs")).unwrap();
    assert!(metrics.iter().all(|m| telemetry.contains(&format!("name: \"{m}\""))), "exported gauges");
    let one_lane = values_with_config_edit(&s, "      lanes: 2\n", "");
    let docs = render("helm-lanes", &["-f", &one_lane]);
    assert_eq!(one(&docs, "Deployment")["spec"]["replicas"].as_i64(), Some(1), "no lanes: one consumer");
}

#[test]
fn a_config_the_probes_or_the_scrape_cannot_reach_is_refused() {
    let s = TempDir::new("helm-refused");
    let cases = [
        ("address: 0.0.0.0:9464", "address: 127.0.0.1:9464", "listens on loopback only"),
        ("address: 0.0.0.0:9464", "address: 0.0.0.0:9000", "must end with the port metrics.port (9464)"),
        ("type: prometheus", "type: otlp", "monitoring.type must be prometheus"),
        ("type: rabbitmq", "type: memory", "engine.queue.type must be rabbitmq or kafka"),
    ];
    for (from, to, expected) in cases {
        let values = values_with_config_edit(&s, from, to);
        let err = try_render("helm-refused", &["-f", &values]).unwrap_err();
        assert!(err.contains(expected), "{to}: {err}");
    }
    let err = try_render("helm-refused", &["--set", "producer.kind=Deployment"]).unwrap_err();
    assert!(err.contains("producer.kind must be Job or CronJob"), "{err}");
    // another port is fine when the config and metrics.port agree
    let values = values_with_config_edit(&s, "address: 0.0.0.0:9464", "address: 0.0.0.0:9100");
    let docs = render("helm-refused", &["-f", &values, "--set", "metrics.port=9100"]);
    check_pod(&one(&docs, "Deployment")["spec"]["template"], "consumer", &docs, "helm-refused-bizon");
}

#[test]
fn the_chart_passes_helm_lint_and_its_manifests_the_kubernetes_schemas() {
    let chart = chart();
    let out = helm(&["lint", chart.to_str().unwrap()], None);
    assert!(out.status.success(), "helm lint --strict: {}", String::from_utf8_lossy(&out.stderr));
    let cron = ["--set", "producer.kind=CronJob", "--set", "secret.existingSecret=x"];
    for args in [&[][..], &cron[..], &["--set", "consumer.autoscaling.enabled=true"][..]] {
        let text = try_render("helm-schemas", args).unwrap();
        let out = helm(&["validate"], Some(&text));
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // the validator refuses what the API server would
    let out =
        helm(&["validate"], Some("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 2}\n"));
    assert!(!out.status.success(), "an unknown key is refused");
}

#[test]
fn the_configmaps_config_passes_bizon_config_validate() {
    let docs = render("helm-validate", &[]);
    let (text, _) = config(&docs);
    let s = Scratch::new("helm-validate");
    let cfg = s.write("pipeline.yml", &text);
    let mut cmd = s.cmd(&["config", "validate", cfg.to_str().unwrap(), "--strict"]);
    // the pods' environment: the Secret's keys, with stand-in values
    for var in required_placeholders(&text) {
        cmd.env(&var, "stand-in");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// Every value path a template reads (`.Values.a.b`, and the aliases the templates bind) exists
/// in values.yaml, so no template reads a key nobody can find or set by its documented name.
#[test]
fn every_value_a_template_reads_is_in_values_yaml() {
    let values = YamlLoader::load_from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap()).unwrap();
    // template variables bound to a part of .Values (`$v := $root.Values`, `$p := .Values.producer`…)
    let aliases: &[(&str, &[&str])] = &[
        (".Values.", &[""]),
        ("$v.", &[""]),
        ("$p.", &["producer."]),
        ("$c.", &["consumer."]),
        ("$role.", &["producer.", "consumer."]),
        (".values.", &["producer.", "consumer."]),
    ];
    let mut checked = 0;
    for entry in std::fs::read_dir(chart().join("templates")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (alias, prefixes) in aliases {
            for (at, _) in text.match_indices(alias) {
                let rest = &text[at + alias.len()..];
                let end =
                    rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(rest.len());
                let key = rest[..end].trim_end_matches('.');
                if key.is_empty() {
                    continue;
                }
                for prefix in *prefixes {
                    let full = format!("{prefix}{key}");
                    let mut node = &values[0];
                    for part in full.split('.') {
                        assert!(
                            node.as_hash().is_some_and(|h| h.contains_key(&Yaml::String(part.to_owned()))),
                            "{}: `{alias}{key}` reads {full}, which values.yaml does not have",
                            path.display()
                        );
                        node = &node[part];
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 30, "found the templates' value references ({checked})");
}
