//! deploy/clowdapp.yaml: an OpenShift Template holding one ClowdApp whose deployments run the four
//! parts, probed on the ports intake takes from Clowder's app-config, and which requests every
//! topic, bucket and the database intake uses.

use std::collections::BTreeSet;

use intake_core::config::clowder::{AppConfig, CaFiles, Layout};
use intake_core::config::{BucketNames, BusConfig, EnvMap};
use yaml_rust2::Yaml;

use super::{deploy_dir, known_variables};

fn template() -> (String, Yaml) {
    let text = std::fs::read_to_string(deploy_dir().join("clowdapp.yaml")).unwrap();
    let mut docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(docs.len(), 1);
    (text, docs.remove(0))
}

fn strings(node: &Yaml) -> Vec<&str> {
    node.as_vec()
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_str)
        .collect()
}

#[test]
fn template_parameters_are_declared_and_used() {
    let (text, doc) = template();
    assert_eq!(doc["kind"].as_str(), Some("Template"));
    assert_eq!(doc["apiVersion"].as_str(), Some("template.openshift.io/v1"));
    let declared: BTreeSet<&str> = doc["parameters"]
        .as_vec()
        .expect("parameters")
        .iter()
        .map(|p| p["name"].as_str().expect("parameter name"))
        .collect();
    let pattern = regex::Regex::new(r"\$\{\{?([A-Z0-9_]+)\}?\}").unwrap();
    let used: BTreeSet<&str> = pattern
        .captures_iter(&text)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    assert_eq!(declared, used, "parameters declared vs used");
}

#[test]
fn the_clowdapp_runs_the_parts_probed_on_the_ports_clowder_gives_them() {
    let (_, doc) = template();
    let objects = doc["objects"].as_vec().expect("objects");
    assert_eq!(objects.len(), 1);
    let app = &objects[0];
    assert_eq!(app["kind"].as_str(), Some("ClowdApp"));
    assert_eq!(
        app["apiVersion"].as_str(),
        Some("cloud.redhat.com/v1alpha1")
    );
    assert!(app["spec"]["envName"].as_str().is_some());

    // The listeners intake takes from an app-config with Clowder's default ports.
    let ports = AppConfig::parse(
        "default ports",
        r#"{"publicPort": 8000, "privatePort": 10000, "metricsPort": 9000, "metricsPath": "/metrics"}"#,
    )
    .unwrap()
    .variables(&EnvMap::new(), Layout::OnePart, &CaFiles::default());
    let port_of = |var: &str| -> i64 { ports[var].rsplit_once(':').unwrap().1.parse().unwrap() };
    let known = known_variables();
    let mut parts = BTreeSet::new();
    for deployment in app["spec"]["deployments"].as_vec().expect("deployments") {
        let pod = &deployment["podSpec"];
        let part = pod["args"][0].as_str().expect("args: [<part>]");
        parts.insert(part);
        let (listen, public) = match part {
            "ingress" => ("INGRESS_LISTEN", true),
            "tracker" => ("TRACKER_LISTEN", true),
            "validator" => ("VALIDATOR_LISTEN", false),
            "pipeline" => ("PIPELINE_LISTEN", false),
            other => panic!("unknown part {other}"),
        };
        assert_eq!(
            deployment["webServices"]["public"]["enabled"].as_bool(),
            public.then_some(true),
            "{part}: a public web service exactly when the part has an API"
        );
        for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
            let get = &pod[probe]["httpGet"];
            assert_eq!(get["path"].as_str(), Some(path), "{part}: {probe}");
            assert_eq!(
                get["port"].as_i64(),
                Some(port_of(listen)),
                "{part}: {probe}"
            );
        }
        for bound in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    !pod["resources"][bound][resource].is_badvalue(),
                    "{part}: resources.{bound}.{resource} missing"
                );
            }
        }
        for e in pod["env"].as_vec().into_iter().flatten() {
            let name = e["name"].as_str().expect("env name");
            assert!(known.contains(name), "{part}: {name} is read by nothing");
            assert!(
                !ports.contains_key(name),
                "{part}: {name} would override the port Clowder gives"
            );
        }
    }
    let expected: BTreeSet<&str> = ["ingress", "validator", "tracker", "pipeline"].into();
    assert_eq!(parts, expected);
}

#[test]
fn the_clowdapp_requests_every_topic_bucket_and_the_database_intake_uses() {
    let (_, doc) = template();
    let spec = &doc["objects"][0]["spec"];
    let requested: BTreeSet<&str> = spec["kafkaTopics"]
        .as_vec()
        .expect("kafkaTopics")
        .iter()
        .map(|t| t["topicName"].as_str().expect("topicName"))
        .collect();
    let bus = BusConfig::from_env(&EnvMap::new(), std::path::Path::new("/d")).unwrap();
    let services: Vec<String> = intake_core::content_type::DEFAULT_VALID_SERVICES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut used = intake_bus::topics::topic_names(&bus, &services);
    // The built-in pipeline's own topics.
    let pipeline =
        yaml_rust2::YamlLoader::load_from_str(intake_pipeline::default_config_yaml()).unwrap();
    let service = &pipeline[0]["service"];
    for topic in [
        &service["publisher"]["topic"],
        &service["dead_letter"]["topic"],
    ] {
        used.push(topic.as_str().expect("a pipeline topic").to_owned());
    }
    let missing: Vec<_> = used
        .iter()
        .filter(|t| !requested.contains(t.as_str()))
        .collect();
    assert!(missing.is_empty(), "topics not requested: {missing:?}");
    assert_eq!(requested.len(), used.len(), "topics requested but unused");

    let buckets = BucketNames::default();
    assert_eq!(
        strings(&spec["objectStore"]),
        [&buckets.quarantine, &buckets.perm, &buckets.reject]
    );
    assert!(spec["database"]["name"].as_str().is_some());
}
