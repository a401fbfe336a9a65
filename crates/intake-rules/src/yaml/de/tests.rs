//! The deserializer over a small document shape: types, paths, lines, substitution, recovery.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    name: String,
    #[serde(default)]
    count: u32,
    #[serde(default)]
    items: Vec<Item>,
    #[serde(default)]
    map: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    flag: bool,
}

fn read(text: &str, options: &Options<'_>) -> Result<Doc, Vec<String>> {
    let node = Node::parse(text).unwrap();
    from_node(&node, options).map_err(|ps| ps.iter().map(|p| format!("{}:{p}", p.line)).collect())
}

#[test]
fn the_declared_type_wins() {
    let doc = read(
        "name: 000123\ncount: '7'\nmap: {a: 1.50}\n",
        &Options::default(),
    )
    .unwrap();
    assert_eq!(doc.name, "000123");
    assert_eq!(doc.count, 7);
    assert_eq!(doc.map["a"], "1.50");
}

#[test]
fn every_problem_is_reported_with_its_path_and_line() {
    let text = "name: x\ncount: many\nitems:\n  - {flag: yes}\n  - {}\n  - {flag: true, flg: 1}\nnmae: y\n";
    let problems = read(text, &Options::default()).unwrap_err();
    assert_eq!(
        problems,
        [
            "2:count: invalid type: string \"many\", expected u32",
            "4:items[0].flag: invalid type: string \"yes\", expected a boolean",
            "5:items[1].flag: required",
            "6:items[2].flg: unknown key (did you mean flag?)",
            "7:nmae: unknown key (did you mean name?)",
        ]
    );
}

#[test]
fn substitution_and_absent_values() {
    let sub = |t: &str| -> Result<String, String> {
        match t {
            "${N}" => Ok(String::new()),
            "${BAD}" => Err("BAD is not set".into()),
            t => Ok(t.replace("${C}", "3")),
        }
    };
    let options = Options {
        substitute: Some(&sub),
        empty_is_absent: true,
        skip: Vec::new(),
    };
    let doc = read(
        "name: n${C}\ncount: ${N}\nitems: [~, {flag: true}]\n",
        &options,
    )
    .unwrap();
    assert_eq!(
        (doc.name.as_str(), doc.count, doc.items.len()),
        ("n3", 0, 1)
    );
    assert!(doc.items[0].flag);
    let problems = read("name: ${BAD}\n", &options).unwrap_err();
    assert_eq!(problems, ["1:name: BAD is not set"]);
}
