//! Output instances: which fluentd output plugin (and so which buffer) carries a flow's
//! records to one of its outputs. A plugin instance costs fluentd about a quarter of a
//! megabyte and two threads however little it sends (docs/dataplane.md, "Output
//! instances"), so flows share them: every flow of one namespace that sends to an Output
//! shares that Output's instance, and namespaced Outputs of one namespace whose specs are
//! equal (same destination, credentials and settings) share one instance too. Nothing is
//! shared across namespaces: a ClusterOutput gets one instance for the admin's flows
//! (ClusterFlows and the default flow) and one per namespace whose Flows send to it, so one
//! namespace's flood fills only its own buffer and never drops another's records.

use std::collections::BTreeMap;
use std::ops::Bound;

use foldhash::{HashMap, HashMapExt};
use smallvec::SmallVec;

use crate::api::{OutputKind, OutputSpec};

use super::{FlowPlan, Kind, ObjectKey, OutputPlan};

/// Whose records an output instance carries.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sharing {
    /// The admin's flows: ClusterFlows and the default flow.
    Admin,
    /// The Flows of one namespace.
    Namespace(String),
}

impl Sharing {
    /// Who a flow's records belong to.
    pub fn of_flow(flow: &ObjectKey) -> Sharing {
        match (&flow.kind, &flow.namespace) {
            (Kind::Flow, Some(namespace)) => Sharing::Namespace(namespace.clone()),
            _ => Sharing::Admin,
        }
    }

    /// Stable text naming the sharing, part of the instance's identity.
    pub fn as_text(&self) -> &str {
        match self {
            Sharing::Admin => "",
            Sharing::Namespace(namespace) => namespace,
        }
    }
}

/// One output plugin instance of the aggregator, with its own buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputInstance {
    pub sharing: Sharing,
    /// The outputs it delivers for, by key; the first (smallest) names the instance, so
    /// its buffer stays put while outputs that sort after it join or leave.
    pub outputs: Vec<ObjectKey>,
}

impl OutputInstance {
    /// The output whose key names the instance (and whose spec it renders: every member's
    /// spec is equal).
    pub fn lead(&self) -> &ObjectKey {
        &self.outputs[0]
    }
}

/// Every output instance the flows of a pipeline use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputInstances {
    /// Sorted by sharing, then lead.
    pub instances: Vec<OutputInstance>,
    /// By output: the instances carrying it, one per sharing that uses it (most outputs
    /// have one: inline, as a copy of each sharing was a tenth of grouping at 10,000 flows).
    by_use: HashMap<ObjectKey, SmallVec<[usize; 1]>>,
}

/// The namespace of [`Sharing::of_flow`], borrowed; `None` for [`Sharing::Admin`].
fn sharing_namespace(flow: &ObjectKey) -> Option<&str> {
    match (&flow.kind, &flow.namespace) {
        (Kind::Flow, Some(namespace)) => Some(namespace),
        _ => None,
    }
}

/// What makes two namespaced Outputs interchangeable: the spec they render from, less the
/// Logging they name. `None` for outputs that are never shared: a `file` output writes
/// below a directory named after the Output itself.
fn fingerprint(spec: &OutputSpec) -> Option<String> {
    if matches!(spec.kind(), Some(OutputKind::File(_))) {
        return None;
    }
    if spec.logging_ref.is_none() {
        // Most Outputs name no Logging: no copy of the spec to leave it out.
        return serde_json::to_string(spec).ok();
    }
    let mut spec = spec.clone();
    spec.logging_ref = None;
    serde_json::to_string(&spec).ok()
}

impl OutputInstances {
    /// Groups the outputs `flows` use (in their order: the first use decides nothing but
    /// is kept for callers ranking instances) into instances. Outputs absent from `outputs`
    /// are ignored, as the renderer ignores them.
    pub fn group<'a>(
        flows: impl IntoIterator<Item = &'a FlowPlan>,
        outputs: &BTreeMap<ObjectKey, OutputPlan>,
    ) -> OutputInstances {
        // Every (sharing, output) in use, by the namespace whose Flows use it (`None`: the
        // admin's flows, which sorts first as `Sharing::Admin` does), then the equal
        // namespaced Outputs merged. Borrowed: at 10,000 flows a copy of each flow's sharing
        // and outputs cost more than the grouping.
        let mut used: BTreeMap<Option<&'a str>, Vec<&'a ObjectKey>> = BTreeMap::new();
        for flow in flows {
            used.entry(sharing_namespace(&flow.key))
                .or_default()
                .extend(&flow.outputs);
        }
        let mut instances = Vec::new();
        let mut by_use: HashMap<ObjectKey, SmallVec<[usize; 1]>> = HashMap::new();
        for (namespace, mut keys) in used {
            keys.sort();
            keys.dedup();
            let sharing = namespace.map_or(Sharing::Admin, |ns| Sharing::Namespace(ns.to_owned()));
            let mut by_print: HashMap<String, usize> = HashMap::new();
            let mut group: Vec<Vec<ObjectKey>> = Vec::new();
            // `keys` are sorted like `outputs`: a namespace's outputs are usually the next
            // ones there, found without a search.
            let mut next = outputs.range::<ObjectKey, _>(..).peekable();
            for key in keys {
                if next.peek().is_none_or(|(candidate, _)| *candidate != key) {
                    next = outputs
                        .range::<ObjectKey, _>((Bound::Included(key), Bound::Unbounded))
                        .peekable();
                }
                // Outputs absent from `outputs` are ignored, as the renderer ignores them.
                let Some((_, plan)) = next.next_if(|(candidate, _)| *candidate == key) else {
                    continue;
                };
                let print = (key.kind == Kind::Output)
                    .then(|| fingerprint(&plan.spec))
                    .flatten();
                match print {
                    Some(print) => match by_print.get(&print) {
                        Some(&index) => group[index].push(key.clone()),
                        None => {
                            by_print.insert(print, group.len());
                            group.push(vec![key.clone()]);
                        }
                    },
                    None => group.push(vec![key.clone()]),
                }
            }
            group.sort();
            for outputs in group {
                for output in &outputs {
                    by_use
                        .entry(output.clone())
                        .or_default()
                        .push(instances.len());
                }
                instances.push(OutputInstance {
                    sharing: sharing.clone(),
                    outputs,
                });
            }
        }
        OutputInstances { instances, by_use }
    }

    /// The instances of a pipeline's flows and default flow.
    pub fn of(pipeline: &super::Pipeline) -> OutputInstances {
        Self::group(
            pipeline.flows.iter().chain(&pipeline.default_flow),
            &pipeline.outputs,
        )
    }

    /// Index of the instance carrying `flow`'s records to `output`.
    pub fn index(&self, flow: &ObjectKey, output: &ObjectKey) -> Option<usize> {
        let namespace = sharing_namespace(flow);
        self.by_use.get(output)?.iter().copied().find(|index| {
            match &self.instances[*index].sharing {
                Sharing::Admin => namespace.is_none(),
                Sharing::Namespace(ns) => namespace == Some(ns.as_str()),
            }
        })
    }

    /// The instances a flow sends to, in the order it references its outputs, each once
    /// (two equal Outputs of one flow are one destination).
    pub fn of_flow(&self, flow: &FlowPlan) -> Vec<usize> {
        let mut indexes: Vec<usize> = Vec::new();
        for output in &flow.outputs {
            if let Some(index) = self.index(&flow.key, output)
                && !indexes.contains(&index)
            {
                indexes.push(index);
            }
        }
        indexes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{FlowMatcher, Scope};

    fn plan(key: &ObjectKey, spec: serde_json::Value) -> OutputPlan {
        OutputPlan {
            key: key.clone(),
            spec: serde_json::from_value(spec).unwrap(),
            secret_files: BTreeMap::new(),
        }
    }

    fn flow(key: ObjectKey, outputs: &[&ObjectKey]) -> FlowPlan {
        FlowPlan::new(
            key,
            FlowMatcher {
                scope: Scope::Cluster,
                rules: Vec::new(),
            },
            Vec::new(),
            outputs.iter().map(|k| (*k).clone()).collect(),
        )
    }

    #[test]
    fn equal_outputs_of_one_namespace_share_and_cluster_outputs_split_by_namespace() {
        let es = serde_json::json!({"elasticsearch": {"hosts": ["https://es:9200"]}});
        let a1 = ObjectKey::namespaced(Kind::Output, "a", "one");
        let a2 = ObjectKey::namespaced(Kind::Output, "a", "two");
        let b1 = ObjectKey::namespaced(Kind::Output, "b", "one");
        let archive = ObjectKey::cluster(Kind::ClusterOutput, "archive");
        let outputs: BTreeMap<_, _> = [
            plan(&a1, es.clone()),
            plan(&a2, serde_json::json!({"elasticsearch": {"hosts": ["https://es:9200"]}, "loggingRef": "main"})),
            plan(&b1, es.clone()),
            plan(&archive, es),
        ]
        .into_iter()
        .map(|p| (p.key.clone(), p))
        .collect();
        let flows = [
            flow(
                ObjectKey::namespaced(Kind::Flow, "a", "x"),
                &[&a2, &archive],
            ),
            flow(ObjectKey::namespaced(Kind::Flow, "a", "y"), &[&a1]),
            flow(
                ObjectKey::namespaced(Kind::Flow, "b", "z"),
                &[&b1, &archive],
            ),
            flow(ObjectKey::cluster(Kind::ClusterFlow, "all"), &[&archive]),
        ];
        let grouped = OutputInstances::group(&flows, &outputs);
        let summary: Vec<(Sharing, Vec<String>)> = grouped
            .instances
            .iter()
            .map(|i| {
                (
                    i.sharing.clone(),
                    i.outputs.iter().map(ToString::to_string).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (Sharing::Admin, vec!["ClusterOutput archive".to_owned()]),
                (
                    Sharing::Namespace("a".into()),
                    vec!["ClusterOutput archive".to_owned()]
                ),
                (
                    Sharing::Namespace("a".into()),
                    vec!["Output a/one".to_owned(), "Output a/two".to_owned()]
                ),
                (
                    Sharing::Namespace("b".into()),
                    vec!["ClusterOutput archive".to_owned()]
                ),
                (
                    Sharing::Namespace("b".into()),
                    vec!["Output b/one".to_owned()]
                ),
            ]
        );
        assert_eq!(grouped.of_flow(&flows[0]), [2, 1]);
        assert_eq!(grouped.of_flow(&flows[1]), [2]);
    }

    /// Outputs a flow names that the pipeline does not hold are skipped wherever they sort:
    /// before, between and after the ones it holds.
    #[test]
    fn outputs_missing_from_the_pipeline_are_ignored() {
        let key = |name: &str| ObjectKey::namespaced(Kind::Output, "a", name);
        let spec = |host: &str| serde_json::json!({"http": {"endpoint": host}});
        let outputs: BTreeMap<_, _> = [plan(&key("b"), spec("one")), plan(&key("d"), spec("two"))]
            .into_iter()
            .map(|p| (p.key.clone(), p))
            .collect();
        let names = ["e", "d", "c", "b", "a"].map(key);
        let flows = [flow(
            ObjectKey::namespaced(Kind::Flow, "a", "x"),
            &names.iter().collect::<Vec<_>>(),
        )];
        let grouped = OutputInstances::group(&flows, &outputs);
        let leads: Vec<&ObjectKey> = grouped.instances.iter().map(OutputInstance::lead).collect();
        assert_eq!(leads, [&key("b"), &key("d")]);
        assert_eq!(grouped.of_flow(&flows[0]), [1, 0]);
    }

    #[test]
    fn file_outputs_are_never_shared() {
        let file = serde_json::json!({"file": {"path": "logs"}});
        let one = ObjectKey::namespaced(Kind::Output, "a", "one");
        let two = ObjectKey::namespaced(Kind::Output, "a", "two");
        let outputs: BTreeMap<_, _> = [plan(&one, file.clone()), plan(&two, file)]
            .into_iter()
            .map(|p| (p.key.clone(), p))
            .collect();
        let flows = [flow(
            ObjectKey::namespaced(Kind::Flow, "a", "x"),
            &[&one, &two],
        )];
        let grouped = OutputInstances::group(&flows, &outputs);
        assert_eq!(grouped.instances.len(), 2);
    }
}
