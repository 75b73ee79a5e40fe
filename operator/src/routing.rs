//! The routing contract (docs/routing.md), the single source of truth for which flows take
//! a record. The renderers encode these rules into fluent-bit and fluentd configuration;
//! `sluice explain` and the property tests evaluate them directly.

use std::collections::{BTreeMap, BTreeSet};

/// What Sluice knows about a log record when routing it: the Kubernetes metadata the agent
/// attaches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub namespace: String,
    pub namespace_labels: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub host: String,
    pub container: String,
}

/// Which namespaces a flow can see at all.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// A Flow: only its own namespace.
    Namespace(String),
    /// A ClusterFlow or the default flow: every watched namespace.
    Cluster,
}

/// Whether a matching rule takes the record or turns it away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Select,
    Exclude,
}

/// The conditions of one rule. Every non-empty field must match: map fields need every pair
/// present, list fields need any one value equal. An empty selector matches every record.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Selector {
    pub namespaces: BTreeSet<String>,
    pub namespace_labels: LabelMap,
    pub labels: LabelMap,
    pub hosts: BTreeSet<String>,
    pub container_names: BTreeSet<String>,
}

/// Labels a selector asks for, sorted by name. A sorted vector rather than a B-tree: a
/// selector names a label or two, and a B-tree's first node holds room for eleven (about
/// half a kilobyte per rule, 10 MiB of a 10,000-flow Logging kept between reconciles).
pub type LabelMap = litemap::LiteMap<String, String>;

/// The [`LabelMap`] of a selector's labels as the API holds them.
pub fn label_map(labels: &BTreeMap<String, String>) -> LabelMap {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// One ordered rule of a flow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub action: Action,
    pub selector: Selector,
}

/// A flow's scope and ordered rules.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowMatcher {
    pub scope: Scope,
    pub rules: Vec<Rule>,
}

/// The namespaces a Logging collects from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watched {
    All,
    Only(BTreeSet<String>),
}

impl Watched {
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Watched::All => true,
            Watched::Only(set) => set.contains(namespace),
        }
    }
}

/// Why a flow did or did not take a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The record's namespace is outside the flow's scope.
    OutOfScope,
    /// Rule `index` (0-based) matched and selects.
    SelectedBy(usize),
    /// Rule `index` matched and excludes.
    ExcludedBy(usize),
    /// The flow has no rules, so it takes everything in scope.
    SelectedByEmptyMatch,
    /// The flow has only exclude rules and none matched: "everything except".
    SelectedByExcludeOnly,
    /// Some rule selects, but no rule matched.
    NoRuleMatched,
}

impl Decision {
    pub fn takes(self) -> bool {
        matches!(
            self,
            Decision::SelectedBy(_)
                | Decision::SelectedByEmptyMatch
                | Decision::SelectedByExcludeOnly
        )
    }
}

impl Selector {
    pub fn matches(&self, record: &Record) -> bool {
        (self.namespaces.is_empty() || self.namespaces.contains(&record.namespace))
            && contains_all(&record.namespace_labels, &self.namespace_labels)
            && contains_all(&record.labels, &self.labels)
            && (self.hosts.is_empty() || self.hosts.contains(&record.host))
            && (self.container_names.is_empty() || self.container_names.contains(&record.container))
    }
}

fn contains_all(have: &BTreeMap<String, String>, want: &LabelMap) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

impl FlowMatcher {
    /// Whether the flow takes a record in scope that none of its rules matched (rule 4 of
    /// docs/routing.md): yes with no rules or only exclude rules.
    pub fn takes_unmatched(&self) -> bool {
        self.rules.iter().all(|rule| rule.action == Action::Exclude)
    }

    /// Applies the contract: scope first, then the first matching rule decides.
    pub fn decide(&self, record: &Record) -> Decision {
        if let Scope::Namespace(namespace) = &self.scope
            && *namespace != record.namespace
        {
            return Decision::OutOfScope;
        }
        if self.rules.is_empty() {
            return Decision::SelectedByEmptyMatch;
        }
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.selector.matches(record) {
                return match rule.action {
                    Action::Select => Decision::SelectedBy(index),
                    Action::Exclude => Decision::ExcludedBy(index),
                };
            }
        }
        if self.takes_unmatched() {
            Decision::SelectedByExcludeOnly
        } else {
            Decision::NoRuleMatched
        }
    }
}

/// Indices of the flows that take `record`, in the order given; empty means the default
/// flow takes it. Records from unwatched namespaces reach no flow and not the default flow.
pub fn route<'a>(
    flows: impl IntoIterator<Item = &'a FlowMatcher>,
    watched: &Watched,
    record: &Record,
) -> Routed {
    if !watched.contains(&record.namespace) {
        return Routed::Unwatched;
    }
    let takers: Vec<usize> = flows
        .into_iter()
        .enumerate()
        .filter(|(_, flow)| flow.decide(record).takes())
        .map(|(index, _)| index)
        .collect();
    if takers.is_empty() {
        Routed::Default
    } else {
        Routed::Flows(takers)
    }
}

/// Where a record goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routed {
    /// Not collected at all.
    Unwatched,
    /// Each listed flow (by index) gets its own copy.
    Flows(Vec<usize>),
    /// No flow took it; the default flow gets it (or it is dropped if there is none).
    Default,
}

/// The flows that can take a record of a given namespace, by index: the ClusterFlows (and
/// any other cluster-scoped matcher) plus that namespace's Flows. Every other flow decides
/// `OutOfScope`, so [`route`] over the candidates gives the same answer as over all flows;
/// the agent's routing table is laid out this way so a record costs its namespace's flows,
/// not the cluster's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidates {
    pub cluster: Vec<usize>,
    pub by_namespace: BTreeMap<String, Vec<usize>>,
}

impl Candidates {
    pub fn new<'a>(flows: impl IntoIterator<Item = &'a FlowMatcher>) -> Self {
        let mut candidates = Candidates::default();
        for (index, flow) in flows.into_iter().enumerate() {
            match &flow.scope {
                Scope::Cluster => candidates.cluster.push(index),
                Scope::Namespace(namespace) => candidates
                    .by_namespace
                    .entry(namespace.clone())
                    .or_default()
                    .push(index),
            }
        }
        candidates
    }

    /// Indices of the flows a record of `namespace` must be evaluated against, ascending.
    pub fn for_namespace(&self, namespace: &str) -> Vec<usize> {
        let mut indices = self.cluster.clone();
        if let Some(local) = self.by_namespace.get(namespace) {
            indices.extend(local);
        }
        indices.sort_unstable();
        indices
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(scope: Scope, action: Action) -> FlowMatcher {
        FlowMatcher {
            scope,
            rules: vec![Rule {
                action,
                selector: Selector::default(),
            }],
        }
    }

    #[test]
    fn candidates_hold_every_flow_that_can_take_a_namespace() {
        let flows = [
            flow(Scope::Namespace("a".into()), Action::Select),
            flow(Scope::Cluster, Action::Select),
            flow(Scope::Namespace("b".into()), Action::Select),
            flow(Scope::Namespace("a".into()), Action::Exclude),
        ];
        let candidates = Candidates::new(&flows);
        assert_eq!(candidates.for_namespace("a"), vec![0, 1, 3]);
        assert_eq!(candidates.for_namespace("c"), vec![1]);
        for namespace in ["a", "b", "c"] {
            let record = Record {
                namespace: namespace.into(),
                ..Record::default()
            };
            let narrowed: Vec<&FlowMatcher> = candidates
                .for_namespace(namespace)
                .into_iter()
                .map(|i| &flows[i])
                .collect();
            let takers = |routed| match routed {
                Routed::Flows(indices) => indices,
                _ => Vec::new(),
            };
            let all = takers(route(&flows, &Watched::All, &record));
            let narrowed: Vec<usize> =
                takers(route(narrowed.iter().copied(), &Watched::All, &record))
                    .into_iter()
                    .map(|i| candidates.for_namespace(namespace)[i])
                    .collect();
            assert_eq!(all, narrowed, "namespace {namespace}");
        }
    }

    #[test]
    fn takes_unmatched_only_without_select_rules() {
        assert!(
            FlowMatcher {
                scope: Scope::Cluster,
                rules: vec![]
            }
            .takes_unmatched()
        );
        assert!(flow(Scope::Cluster, Action::Exclude).takes_unmatched());
        assert!(!flow(Scope::Cluster, Action::Select).takes_unmatched());
    }
}
