//! The registry of rule sets and the component graph built from it once at start-up: enabled
//! components, cut by `target_components`, sorted topologically.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use regex::Regex;
use serde_json::{Map, Value};

use crate::model::{Component, Kind};

/// A rule set's identity in `analysis_metadata.plugin_sets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetInfo {
    pub name: String,
    pub version: String,
    pub commit: String,
}

/// Why a registry or graph is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("component name {0:?} does not match ^([a-zA-Z0-9_]+\\.)+[a-z0-9_]+$")]
    BadName(String),
    #[error("rule {0:?}: the module segment must match ^[a-zA-Z0-9_]+(_[a-z0-9_]+)+$ and the name end in .report")]
    BadRuleName(String),
    #[error("component {0:?} is registered twice")]
    Duplicate(String),
    #[error("rule set {0:?} is registered twice")]
    DuplicateSet(String),
    #[error("component {component:?} depends on unknown component {dep:?}")]
    UnknownDependency { component: String, dep: String },
    #[error("dependency cycle: {0}")]
    Cycle(String),
}

/// Every registered set and component.
#[derive(Default)]
pub struct Registry {
    pub(crate) sets: Vec<SetInfo>,
    pub(crate) components: Vec<Arc<dyn Component>>,
    names: HashSet<String>,
}

#[allow(
    clippy::expect_used,
    reason = "a constant pattern; the unit tests run it"
)]
fn name_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^([a-zA-Z0-9_]+\.)+[a-z0-9_]+$").expect("valid regex"))
}

#[allow(
    clippy::expect_used,
    reason = "a constant pattern; the unit tests run it"
)]
fn module_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[a-zA-Z0-9_]+(_[a-z0-9_]+)+$").expect("valid regex"))
}

/// Whether a result key is one the aggregator accepts.
#[allow(
    clippy::expect_used,
    reason = "a constant pattern; the unit tests run it"
)]
pub fn valid_key(key: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[A-Z0-9]+(_[A-Z0-9]+)+$").expect("valid regex"))
        .is_match(key)
}

/// The `<module>` of a rule name: its second-to-last segment.
pub fn module_of(name: &str) -> &str {
    let mut parts = name.rsplit('.');
    parts.next();
    parts.next().unwrap_or(name)
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a set (a `plugin_sets` entry).
    pub fn add_set(&mut self, info: SetInfo) -> Result<(), GraphError> {
        if self.sets.iter().any(|s| s.name == info.name) {
            return Err(GraphError::DuplicateSet(info.name));
        }
        self.sets.push(info);
        Ok(())
    }

    /// Registers a component; names are unique and well-formed.
    pub fn add(&mut self, component: impl Component) -> Result<(), GraphError> {
        self.add_arc(Arc::new(component))
    }

    pub fn add_arc(&mut self, component: Arc<dyn Component>) -> Result<(), GraphError> {
        let name = component.name().to_owned();
        if !name_re().is_match(&name) {
            return Err(GraphError::BadName(name));
        }
        if component.kind() == Kind::Rule
            && (!name.ends_with(".report") || !module_re().is_match(module_of(&name)))
        {
            return Err(GraphError::BadRuleName(name));
        }
        if !self.names.insert(name.clone()) {
            return Err(GraphError::Duplicate(name));
        }
        self.components.push(component);
        Ok(())
    }

    pub fn sets(&self) -> &[SetInfo] {
        &self.sets
    }
}

/// One `plugins.configs` entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ComponentConfig {
    /// A component-name prefix; with `|`, a prefix of result ids.
    pub name: String,
    pub enabled: Option<bool>,
    pub tags: Option<Vec<String>>,
    pub links: Option<Map<String, Value>>,
}

/// Which components run.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub default_component_enabled: bool,
    pub configs: Vec<ComponentConfig>,
    /// Rule-name prefixes; empty: every enabled rule.
    pub target_components: Vec<String>,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            default_component_enabled: true,
            configs: Vec::new(),
            target_components: Vec::new(),
        }
    }
}

/// The graph one archive is evaluated against.
pub struct Graph {
    pub(crate) sets: Vec<SetInfo>,
    /// Topological order.
    pub(crate) order: Vec<Arc<dyn Component>>,
    pub(crate) tags: HashMap<String, Vec<String>>,
    pub(crate) links: HashMap<String, Map<String, Value>>,
    pub(crate) removed_ids: Vec<String>,
}

impl Graph {
    /// Cuts and sorts the registry.
    pub fn build(registry: Registry, selection: &Selection) -> Result<Graph, GraphError> {
        let by_name: HashMap<String, Arc<dyn Component>> = registry
            .components
            .iter()
            .map(|c| (c.name().to_owned(), c.clone()))
            .collect();
        for c in &registry.components {
            for dep in c.deps().all() {
                if !by_name.contains_key(dep) {
                    return Err(GraphError::UnknownDependency {
                        component: c.name().to_owned(),
                        dep: dep.clone(),
                    });
                }
            }
        }
        let enabled = |name: &str| -> Option<bool> {
            let mut state = None;
            for cfg in selection.configs.iter().filter(|c| !c.name.contains('|')) {
                if let Some(e) = cfg.enabled {
                    if name.starts_with(&cfg.name) {
                        state = Some(e);
                    }
                }
            }
            state
        };
        let targeted = |name: &str| {
            selection.target_components.is_empty()
                || selection
                    .target_components
                    .iter()
                    .any(|t| name.starts_with(t))
        };
        let mut included: BTreeSet<String> = BTreeSet::new();
        let mut stack: Vec<String> = registry
            .components
            .iter()
            .filter(|c| c.kind() == Kind::Rule)
            .filter(|c| {
                enabled(c.name()).unwrap_or(selection.default_component_enabled)
                    && targeted(c.name())
            })
            .map(|c| c.name().to_owned())
            .collect();
        while let Some(name) = stack.pop() {
            if !included.insert(name.clone()) {
                continue;
            }
            if let Some(c) = by_name.get(&name) {
                for dep in c.deps().all() {
                    // An explicitly disabled dependency stays out: dependents see it absent.
                    if enabled(dep) != Some(false) {
                        stack.push(dep.clone());
                    }
                }
            }
        }
        let order = topo_sort(&registry.components, &included)?;
        let mut tags = HashMap::new();
        let mut links = HashMap::new();
        for c in order.iter().filter(|c| c.kind() == Kind::Rule) {
            let mut t = c.tags();
            let mut l = c.links();
            for cfg in selection
                .configs
                .iter()
                .filter(|cfg| !cfg.name.contains('|') && c.name().starts_with(&cfg.name))
            {
                if let Some(ct) = &cfg.tags {
                    t = ct.clone();
                }
                if let Some(cl) = &cfg.links {
                    l = cl.clone();
                }
            }
            t.sort();
            t.dedup();
            tags.insert(c.name().to_owned(), t);
            links.insert(c.name().to_owned(), l);
        }
        let removed_ids = selection
            .configs
            .iter()
            .filter(|c| c.name.contains('|') && c.enabled == Some(false))
            .map(|c| c.name.clone())
            .collect();
        Ok(Graph {
            sets: registry.sets,
            order,
            tags,
            links,
            removed_ids,
        })
    }

    /// Paths and globs the graph's specs read.
    pub fn wanted(&self) -> Vec<String> {
        let mut w: Vec<String> = self.order.iter().flat_map(|c| c.wanted()).collect();
        w.sort();
        w.dedup();
        w
    }

    pub fn sets(&self) -> &[SetInfo] {
        &self.sets
    }

    /// The graph as text: one line per component in evaluation order, with its dependencies.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for s in &self.sets {
            out.push_str(&format!("set {} {} ({})\n", s.name, s.version, s.commit));
        }
        for c in &self.order {
            let deps = c.deps();
            out.push_str(&format!("{:<8} {}", c.kind().as_str(), c.name()));
            if !deps.requires.is_empty() {
                out.push_str(&format!("  requires [{}]", deps.requires.join(", ")));
            }
            for g in &deps.any_of {
                out.push_str(&format!("  any_of [{}]", g.join(", ")));
            }
            if !deps.optional.is_empty() {
                out.push_str(&format!("  optional [{}]", deps.optional.join(", ")));
            }
            out.push('\n');
        }
        out
    }

    /// Names of the rules that run.
    pub fn rules(&self) -> Vec<&str> {
        self.order
            .iter()
            .filter(|c| c.kind() == Kind::Rule)
            .map(|c| c.name())
            .collect()
    }
}

fn topo_sort(
    all: &[Arc<dyn Component>],
    included: &BTreeSet<String>,
) -> Result<Vec<Arc<dyn Component>>, GraphError> {
    // Registration order breaks ties, so the order is stable across runs.
    let comps: Vec<&Arc<dyn Component>> =
        all.iter().filter(|c| included.contains(c.name())).collect();
    let index: HashMap<&str, usize> = comps
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name(), i))
        .collect();
    let mut indegree = vec![0usize; comps.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); comps.len()];
    for (i, c) in comps.iter().enumerate() {
        let deps: BTreeSet<String> = c.deps().all().cloned().collect();
        for d in deps {
            if let Some(&j) = index.get(d.as_str()) {
                indegree[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..comps.len()).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(comps.len());
    while let Some(i) = ready.pop_first() {
        order.push(comps[i].clone());
        for &j in &dependents[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(j);
            }
        }
    }
    if order.len() != comps.len() {
        let stuck: Vec<&str> = (0..comps.len())
            .filter(|&i| indegree[i] > 0)
            .map(|i| comps[i].name())
            .collect();
        return Err(GraphError::Cycle(stuck.join(" -> ")));
    }
    Ok(order)
}
