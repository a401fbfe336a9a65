//! deploy/kubernetes/: each part has a Deployment and a Service that fit together, probes and
//! scrape annotations on the port the part really listens on, resources, a non-root security
//! context, and only variables the configuration reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use yaml_rust2::Yaml;

use super::{deploy_dir, known_variables, yaml_files};

/// The `intake` subcommand each manifest runs → the variables holding its listeners (the first
/// serves the probes and the scraped `/metrics`).
const PARTS: [(&str, &[&str]); 5] = [
    ("ingress", &["INGRESS_LISTEN"]),
    ("validator", &["VALIDATOR_LISTEN"]),
    ("tracker", &["TRACKER_LISTEN"]),
    ("pipeline", &["PIPELINE_LISTEN"]),
    ("serve", &["INGRESS_LISTEN", "TRACKER_LISTEN"]),
];

fn documents() -> Vec<(PathBuf, Yaml)> {
    let files = yaml_files(&deploy_dir().join("kubernetes"));
    assert!(!files.is_empty(), "no manifests in deploy/kubernetes");
    files
        .into_iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let docs = yaml_rust2::YamlLoader::load_from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            docs.into_iter().map(move |d| (path.clone(), d))
        })
        .collect()
}

fn kind<'a>(docs: &'a [(PathBuf, Yaml)], kind: &str) -> Vec<(&'a Path, &'a Yaml)> {
    docs.iter()
        .filter(|(_, d)| d["kind"].as_str() == Some(kind))
        .map(|(p, d)| (p.as_path(), d))
        .collect()
}

fn str_map(node: &Yaml) -> BTreeMap<String, String> {
    node.as_hash()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn port_of(listen: &str) -> i64 {
    listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{listen:?} has no port"))
}

/// A probe's or Service's port: a number, or the name of one of the container's ports.
fn resolve_port(port: &Yaml, container: &Yaml) -> i64 {
    if let Some(n) = port.as_i64() {
        return n;
    }
    let name = port.as_str().expect("a port number or name");
    container["ports"]
        .as_vec()
        .into_iter()
        .flatten()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

#[test]
fn every_part_has_a_deployment_and_a_service_that_fit() {
    let docs = documents();
    let deployments = kind(&docs, "Deployment");
    let services = kind(&docs, "Service");
    let mut parts_seen = BTreeSet::new();
    for (path, deployment) in &deployments {
        let at = path.display();
        assert_eq!(deployment["apiVersion"].as_str(), Some("apps/v1"), "{at}");
        let template = &deployment["spec"]["template"];
        let labels = str_map(&template["metadata"]["labels"]);
        assert_eq!(
            str_map(&deployment["spec"]["selector"]["matchLabels"]),
            labels,
            "{at}: selector and pod labels differ"
        );
        let containers = template["spec"]["containers"].as_vec().expect("containers");
        assert_eq!(containers.len(), 1, "{at}");
        let container = &containers[0];
        let part = container["args"][0].as_str().expect("args: [<part>]");
        let (_, listen_vars) = PARTS
            .iter()
            .find(|(p, _)| *p == part)
            .unwrap_or_else(|| panic!("{at}: unknown part {part}"));
        parts_seen.insert(part.to_owned());

        // The part's listeners, from the variables the configuration reads.
        let env: BTreeMap<String, String> = container["env"]
            .as_vec()
            .into_iter()
            .flatten()
            .map(|e| {
                let name = e["name"].as_str().expect("env name").to_owned();
                (name, e["value"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        let listen_ports: Vec<i64> = listen_vars
            .iter()
            .map(|v| {
                let listen = env
                    .get(*v)
                    .unwrap_or_else(|| panic!("{at}: {v} not set for {part}"));
                assert!(
                    listen.starts_with("0.0.0.0:"),
                    "{at}: {v}={listen} is not reachable from outside the pod"
                );
                port_of(listen)
            })
            .collect();
        let declared: BTreeSet<i64> = container["ports"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(|p| p["containerPort"].as_i64())
            .collect();
        assert_eq!(
            declared,
            listen_ports.iter().copied().collect(),
            "{at}: container ports are not the listeners"
        );

        // Probes and scraping on the listener that serves /livez, /readyz and /metrics.
        let health_port = listen_ports[0];
        for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["path"].as_str(), Some(path), "{at}: {probe}");
            assert_eq!(
                resolve_port(&get["port"], container),
                health_port,
                "{at}: {probe}"
            );
        }
        let annotations = str_map(&template["metadata"]["annotations"]);
        assert_eq!(
            annotations.get("prometheus.io/scrape").map(String::as_str),
            Some("true"),
            "{at}"
        );
        assert_eq!(
            annotations.get("prometheus.io/path").map(String::as_str),
            Some("/metrics"),
            "{at}"
        );
        assert_eq!(
            annotations.get("prometheus.io/port"),
            Some(&health_port.to_string()),
            "{at}"
        );

        for bound in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    !container["resources"][bound][resource].is_badvalue(),
                    "{at}: resources.{bound}.{resource} missing"
                );
            }
        }

        let pod_security = &template["spec"]["securityContext"];
        assert_eq!(pod_security["runAsNonRoot"].as_bool(), Some(true), "{at}");
        assert!(
            pod_security["runAsUser"].as_i64().is_some_and(|u| u > 0),
            "{at}: the image has no USER, so the pod must name a non-zero one"
        );
        let security = &container["securityContext"];
        assert_eq!(
            security["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{at}"
        );
        assert_eq!(
            security["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{at}"
        );
        assert_eq!(
            security["capabilities"]["drop"][0].as_str(),
            Some("ALL"),
            "{at}"
        );
        // With a read-only root, the data directory and TMPDIR must be mounted volumes.
        let mounts: BTreeSet<&str> = container["volumeMounts"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(|m| m["mountPath"].as_str())
            .collect();
        let data_dir = env.get("INTAKE_DATA_DIR").map(String::as_str);
        assert!(
            data_dir.is_some_and(|d| mounts.contains(d)),
            "{at}: INTAKE_DATA_DIR not mounted"
        );
        assert!(mounts.contains("/tmp"), "{at}: /tmp not mounted");

        // A Service selecting exactly these pods, on ports the container declares.
        let service = services
            .iter()
            .find(|(_, s)| str_map(&s["spec"]["selector"]) == labels)
            .unwrap_or_else(|| panic!("{at}: no Service selects the {part} pods"));
        for port in service.1["spec"]["ports"].as_vec().expect("service ports") {
            let target = resolve_port(&port["targetPort"], container);
            assert!(
                declared.contains(&target),
                "{at}: Service targets port {target}"
            );
        }
    }
    let expected: BTreeSet<String> = PARTS.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(parts_seen, expected);
}

#[test]
fn manifests_set_only_variables_the_config_reads() {
    let docs = documents();
    let known = known_variables();
    let mut set = BTreeSet::new();
    for (_, map) in kind(&docs, "ConfigMap") {
        set.extend(str_map(&map["data"]).into_keys());
    }
    for (_, secret) in kind(&docs, "Secret") {
        set.extend(str_map(&secret["stringData"]).into_keys());
    }
    for (_, deployment) in kind(&docs, "Deployment") {
        for container in deployment["spec"]["template"]["spec"]["containers"]
            .as_vec()
            .into_iter()
            .flatten()
        {
            for e in container["env"].as_vec().into_iter().flatten() {
                set.insert(e["name"].as_str().expect("env name").to_owned());
            }
            // Every ConfigMap and Secret the parts read is in the folder.
            for source in container["envFrom"].as_vec().into_iter().flatten() {
                let (wanted, name) = if source["configMapRef"].is_badvalue() {
                    ("Secret", &source["secretRef"]["name"])
                } else {
                    ("ConfigMap", &source["configMapRef"]["name"])
                };
                assert!(
                    kind(&docs, wanted)
                        .iter()
                        .any(|(_, d)| d["metadata"]["name"] == *name),
                    "{wanted} {name:?} missing"
                );
            }
        }
    }
    let unknown: Vec<_> = set.iter().filter(|v| !known.contains(v.as_str())).collect();
    assert!(
        unknown.is_empty(),
        "variables no configuration reads: {unknown:?}"
    );
    for needed in ["KAFKA_BROKERS", "S3_ENDPOINT_URL", "TRACKER_DATABASE_URL"] {
        assert!(set.contains(needed), "{needed} not set");
    }
}

/// The Kubernetes versions whose JSON schemas the manifests must satisfy: the oldest one still
/// common in clusters, and the newest one kubernetes-validate bundles.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];

/// `kubernetes-validate --strict` on `files` (unknown fields are errors) with the harness's Python.
fn kubernetes_validate(files: &[PathBuf]) -> std::process::Output {
    let python = std::env::var("INTAKE_TEST_PYTHON").expect(
        "INTAKE_TEST_PYTHON unset: run under scripts/with-servers.sh, which installs kubernetes-validate",
    );
    let mut cmd = std::process::Command::new(python);
    cmd.args(["-m", "kubernetes_validate", "--strict", "--no-warn"]);
    for version in KUBERNETES_VERSIONS {
        cmd.args(["-k", version]);
    }
    cmd.args(files).output().unwrap()
}

#[test]
fn manifests_satisfy_the_kubernetes_schemas() {
    let files = yaml_files(&deploy_dir().join("kubernetes"));
    let out = kubernetes_validate(&files);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The same check refuses a manifest with a misspelt field or a port that is not a number.
    let dir = tempfile::tempdir().unwrap();
    let ingress = std::fs::read_to_string(deploy_dir().join("kubernetes/ingress.yaml")).unwrap();
    for (from, to) in [
        ("  replicas: 2", "  replica: 2"),
        ("containerPort: 8080", "containerPort: eighty"),
    ] {
        assert!(ingress.contains(from));
        let broken = dir.path().join("broken.yaml");
        std::fs::write(&broken, ingress.replacen(from, to, 1)).unwrap();
        let out = kubernetes_validate(&[broken]);
        assert!(!out.status.success(), "{to:?} passed: {out:?}");
    }
}
