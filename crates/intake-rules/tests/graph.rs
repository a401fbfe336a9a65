//! Graph rules: collisions, unknown dependencies and cycles fail at build; panics, errors and
//! non-boolean `when` become RULE_FAILED skips; oversized details are replaced; the deadline holds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use intake_rules::declarative::load_str;
use intake_rules::{
    Component, ComponentError, Deps, Graph, GraphError, Inputs, Kind, Outcome, Registry, Response,
    RunCx, Selection,
};
use serde_json::{json, Map, Value};

struct Rule {
    name: &'static str,
    deps: Deps,
    run: fn() -> Outcome,
}

impl Component for Rule {
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> Kind {
        if self.name.ends_with(".report") {
            Kind::Rule
        } else {
            Kind::Combiner
        }
    }
    fn deps(&self) -> Deps {
        self.deps.clone()
    }
    fn run(&self, _: &Inputs<'_>, _: &RunCx<'_>) -> Outcome {
        (self.run)()
    }
}

fn value() -> Outcome {
    Outcome::value(1u8)
}

fn evaluate(reg: Registry) -> Value {
    let dir = tempfile::tempdir().unwrap();
    Graph::build(reg, &Selection::default())
        .unwrap()
        .evaluate(dir.path(), Instant::now() + Duration::from_secs(5))
        .unwrap()
        .report
}

#[test]
fn build_errors() {
    let mut reg = Registry::new();
    reg.add(Rule {
        name: "s.combiners.a",
        deps: Deps::default(),
        run: value,
    })
    .unwrap();
    assert_eq!(
        reg.add(Rule {
            name: "s.combiners.a",
            deps: Deps::default(),
            run: value
        }),
        Err(GraphError::Duplicate("s.combiners.a".into()))
    );
    assert!(matches!(
        reg.add(Rule {
            name: "Bad Name",
            deps: Deps::default(),
            run: value
        }),
        Err(GraphError::BadName(_))
    ));
    assert!(matches!(
        reg.add(Rule {
            name: "s.nounderscore.report",
            deps: Deps::default(),
            run: value
        }),
        Err(GraphError::BadRuleName(_))
    ));

    let mut reg = Registry::new();
    reg.add(Rule {
        name: "s.combiners.a",
        deps: Deps::requires(["s.combiners.b"]),
        run: value,
    })
    .unwrap();
    reg.add(Rule {
        name: "s.combiners.b",
        deps: Deps::requires(["s.combiners.a"]),
        run: value,
    })
    .unwrap();
    reg.add(Rule {
        name: "s.my_rule.report",
        deps: Deps::requires(["s.combiners.a"]),
        run: value,
    })
    .unwrap();
    assert!(
        matches!(Graph::build(reg, &Selection::default()), Err(GraphError::Cycle(c)) if c.contains("s.combiners.a"))
    );

    let mut reg = Registry::new();
    reg.add(Rule {
        name: "s.my_rule.report",
        deps: Deps::requires(["s.combiners.zz"]),
        run: value,
    })
    .unwrap();
    assert!(matches!(
        Graph::build(reg, &Selection::default()),
        Err(GraphError::UnknownDependency { .. })
    ));
}

#[test]
fn failures_become_rule_failed_skips_and_any_groups_are_listed() {
    let mut reg = Registry::new();
    reg.add(Rule {
        name: "s.combiners.absent",
        deps: Deps::default(),
        run: || Outcome::Skip("no"),
    })
    .unwrap();
    reg.add(Rule {
        name: "s.combiners.here",
        deps: Deps::default(),
        run: value,
    })
    .unwrap();
    reg.add(Rule {
        name: "s.panics_here.report",
        deps: Deps::default(),
        run: || panic!("boom"),
    })
    .unwrap();
    reg.add(Rule {
        name: "s.fails_here.report",
        deps: Deps::default(),
        run: || Outcome::Fail(ComponentError::new("bad input")),
    })
    .unwrap();
    reg.add(Rule {
        name: "s.any_group.report",
        deps: Deps::requires(["s.combiners.here"]).any_of(["s.combiners.absent"]),
        run: value,
    })
    .unwrap();
    reg.add(Rule {
        name: "s.huge_details.report",
        deps: Deps::default(),
        run: || {
            let mut d = Map::new();
            d.insert("blob".into(), json!("x".repeat(70_000)));
            Outcome::value(Some(Response::info("HUGE_KEY", d)))
        },
    })
    .unwrap();
    let report = evaluate(reg);
    let skips: HashMap<&str, (&str, &str)> = report["skips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["rule_fqdn"].as_str().unwrap(),
                (
                    s["reason"].as_str().unwrap(),
                    s["details"].as_str().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(skips["s.panics_here.report"].0, "RULE_FAILED");
    assert!(skips["s.panics_here.report"].1.contains("boom"));
    assert_eq!(skips["s.fails_here.report"], ("RULE_FAILED", "bad input"));
    assert_eq!(
        skips["s.any_group.report"],
        (
            "MISSING_REQUIREMENTS",
            "All: [] Any: ['s.combiners.absent']"
        )
    );
    let huge = &report["info"][0]["details"];
    assert_eq!(huge["type"], "info");
    assert_eq!(huge["info_key"], "HUGE_KEY");
    assert!(huge["max_detail_length_error"].as_u64().unwrap() > 65_535);
    assert!(huge.get("blob").is_none());
}

#[test]
fn the_deadline_stops_evaluation() {
    let mut reg = Registry::new();
    reg.add(Rule {
        name: "s.my_rule.report",
        deps: Deps::default(),
        run: value,
    })
    .unwrap();
    let graph = Graph::build(reg, &Selection::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert!(graph.evaluate(dir.path(), Instant::now()).is_err());
}

#[test]
fn declarative_load_errors_cite_line_rule_and_key() {
    let bad_when = "set: x_site\nrules:\n  - name: my_rule\n    requires: [a.b]\n    responses:\n      - {type: info, key: BAD_WHEN, when: '.b | length'}\n";
    let mut reg = Registry::new();
    load_str("f.yaml", bad_when)
        .unwrap()
        .register(&mut reg)
        .unwrap();
    reg.add(Rule {
        name: "a.b",
        deps: Deps::default(),
        run: || Outcome::value(json!([1, 2])),
    })
    .unwrap();
    let report = evaluate(reg);
    assert_eq!(report["skips"][0]["reason"], "RULE_FAILED");

    let cases = [
        ("set: x\nrules:\n  - name: r_x\n    respones: []\n", "f.yaml:4: rule r_x: rules[].respones"),
        ("set: x\nrules:\n  - name: r_x\n    responses:\n      - {type: pass, key: lower}\n", "responses[0].key"),
        ("set: x\nrules:\n  - name: r_x\n    let: {v: 'def f: 1; f'}\n    responses: []\n", "let.v"),
        ("set: x\nrules:\n  - name: r_x\n    responses:\n      - {type: pass, key: A_B, details: {type: '1'}}\n", "details.type"),
        ("set: x\nspecs:\n  s: {path: a, parser: raw}\n", "specs.s.parser"),
    ];
    for (text, expected) in cases {
        let err = load_str("f.yaml", text).unwrap_err().to_string();
        assert!(err.contains(expected), "{err} should contain {expected}");
    }
}

#[test]
fn declarative_type_errors_name_the_full_path() {
    let cases = [
        (
            "set: x\nrules:\n  - name: r_x\n    responses:\n      - {type: pass, key: A_B, details: [x]}\n",
            "f.yaml:5: rule r_x: rules[].responses[0].details: invalid type: sequence, expected a mapping",
        ),
        (
            "set: x\nrules:\n  - name: r_x\n    responses:\n      - {type: passs, key: A_B}\n",
            "f.yaml:5: rule r_x: rules[].responses[0].type: unknown variant `passs`",
        ),
        (
            "set: x\nspecs:\n  s: {path: a, parser: text, max_files: many}\n",
            "f.yaml:3: specs.s.max_files: invalid type: string \"many\", expected usize",
        ),
        ("set: x\nrules:\n  - {name: r_x}\n", "f.yaml:3: rule r_x: rules[].responses: required"),
        ("rules: []\n", "f.yaml:1: set: required"),
    ];
    for (text, expected) in cases {
        let err = load_str("f.yaml", text).unwrap_err().to_string();
        assert!(err.contains(expected), "{err} should contain {expected}");
    }
}

#[test]
fn load_errors_keep_the_yaml_or_io_problem_as_their_source() {
    use intake_rules::declarative::load_file;
    use intake_rules::yaml::YamlError;
    use std::error::Error as _;

    let err = load_str("f.yaml", "set: [x\n").unwrap_err();
    let yaml = err.source().and_then(|s| s.downcast_ref::<YamlError>());
    assert!(matches!(yaml, Some(YamlError::Syntax { .. })), "{err:?}");
    assert!(err.to_string().starts_with("f.yaml:0: : line "), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let err = load_file(&missing).unwrap_err();
    let io = err
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>());
    assert_eq!(
        io.map(std::io::Error::kind),
        Some(std::io::ErrorKind::NotFound)
    );
    assert!(err.message.starts_with("cannot read: "), "{err}");

    // A problem found in the document itself has no underlying error.
    let err = load_str("f.yaml", "rules: []\n").unwrap_err();
    assert!(err.source().is_none());
}
