//! The workspace keeps the dependency direction the README draws:
//! `core` ← `storage`, `bus`, `archive`, `http` ← `ingress`, `validator`, `tracker`, `pipeline`
//! ← `intake`. Read from `cargo metadata`, so a new `[dependencies]` line against it fails here.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

/// Each workspace crate's layer: a crate may depend only on crates of a lower layer, so component
/// crates (layer 2) never import each other and talk over the bus or HTTP instead.
const LAYERS: &[(&str, u8)] = &[
    ("intake-core", 0),
    ("intake-storage", 1),
    ("intake-bus", 1),
    ("intake-archive", 1),
    ("intake-http", 1),
    // The rules engine the pipeline runs, and the HTTP client the CLI's upload/load commands use.
    ("intake-rules", 1),
    ("intake-client", 1),
    // Test support: allowed anywhere, but only as a dev-dependency or behind a feature.
    ("intake-testkit", 1),
    ("intake-ingress", 2),
    ("intake-validator", 2),
    ("intake-tracker", 2),
    ("intake-pipeline", 2),
    ("intake", 3),
];

/// The domain crate does no I/O: none of these, in any kind of dependency.
const NOT_IN_CORE: &[&str] = &["tokio", "axum", "sqlx", "rdkafka", "reqwest", "hyper"];

fn workspace_packages() -> Vec<Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    meta["packages"].as_array().expect("a package list").clone()
}

/// `(dependency name, kind, optional)` for each dependency a package declares.
fn dependencies(package: &Value) -> Vec<(String, String, bool)> {
    package["dependencies"]
        .as_array()
        .expect("a dependency list")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().expect("a name").to_owned(),
                d["kind"].as_str().unwrap_or("normal").to_owned(),
                d["optional"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn every_workspace_crate_has_a_layer() {
    let layers: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let unplaced: Vec<String> = workspace_packages()
        .iter()
        .map(|p| p["name"].as_str().expect("a name").to_owned())
        .filter(|name| !layers.contains_key(name.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "crates missing from the layer table in {}: {unplaced:?}",
        file!()
    );
}

#[test]
fn dependencies_point_only_to_lower_layers() {
    let layers: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut against = Vec::new();
    for package in workspace_packages() {
        let name = package["name"].as_str().expect("a name");
        let Some(&own) = layers.get(name) else {
            continue; // reported by every_workspace_crate_has_a_layer
        };
        for (dep, kind, optional) in dependencies(&package) {
            let Some(&theirs) = layers.get(dep.as_str()) else {
                continue; // not a workspace crate
            };
            if dep == name {
                continue; // a crate's own features for its tests
            }
            if dep == "intake-testkit" {
                if kind == "normal" && !optional {
                    against.push(format!("{name} → {dep}: test support in production code"));
                }
                continue;
            }
            if theirs >= own {
                against.push(format!(
                    "{name} (layer {own}) → {dep} (layer {theirs}), {kind} dependency"
                ));
            }
        }
    }
    assert!(
        against.is_empty(),
        "dependencies against core ← seams ← components ← intake:\n{}",
        against.join("\n")
    );
}

#[test]
fn core_has_no_io_crates() {
    let packages = workspace_packages();
    let core = packages
        .iter()
        .find(|p| p["name"] == "intake-core")
        .expect("intake-core is a workspace member");
    let found: Vec<String> = dependencies(core)
        .into_iter()
        .map(|(dep, _, _)| dep)
        .filter(|dep| NOT_IN_CORE.contains(&dep.as_str()))
        .collect();
    assert!(
        found.is_empty(),
        "intake-core depends on I/O crates: {found:?}"
    );
}
