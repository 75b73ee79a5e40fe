//! The routing check: a sample of records (every namespace, label set, host and container the
//! source names, plus ones it names nowhere) routed by logging-operator's rules
//! ([`super::incumbent`]) and by Sluice's own pipeline over the converted objects (what
//! `sluice explain` evaluates); every record class routed differently is reported. Also turns
//! the problems Sluice's model finds in the converted objects into report lines.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};

use crate::api::Logging;
use crate::model::{self, ObjectKey, Pipeline, Problem};
use crate::routing::{self, Candidates, Record, Routed};

use super::incumbent::{self, default_flow_label};
use super::report::{Destination, Divergence, Entry, RoutingCheck, Status};
use super::source::{Input, SourceId, SourceObject, string_list, string_map};
use super::yaml::{Node, Value};
use super::{Converted, Domain, SluiceObject};

/// Most records routed per namespace; beyond it the namespace's sample is thinned evenly.
const MAX_RECORDS_PER_NAMESPACE: usize = 5_000;
/// Names no source object uses, so the sample covers "everything else".
const UNLISTED_NAMESPACE: &str = "migrate-unlisted-namespace";
const UNLISTED_HOST: &str = "migrate-unlisted-node";
const UNLISTED_CONTAINER: &str = "migrate-unlisted-container";
/// The stand-in Logging the check gives objects when the input has none.
const STAND_IN_LOGGING: &str = "sluice-migrate-check";

/// Problems of Sluice's model that concern the cluster rather than the conversion.
const TO_DO_REASONS: &[&str] = &["SecretNotFound", "SecretUnreadable"];
/// Problems that change an object without leaving it out, or that follow from another
/// object's (reported on that one); warnings (`Problem::is_warning`) count too.
const CHANGED_REASONS: &[&str] = &["BufferOvercommitted", "NoUsableOutputs", "OutputInvalid"];

/// Routing checks per domain, and report entries per source object for the problems Sluice
/// finds in what was converted.
pub fn check(
    input: &Input,
    converted: &[Converted],
    domains: &[Domain<'_>],
) -> (Vec<RoutingCheck>, BTreeMap<SourceId, Vec<Entry>>) {
    let mut objects = super::objects(converted);
    if objects.loggings.is_empty() {
        objects.loggings.push(Logging::new(
            STAND_IN_LOGGING,
            super::logging_spec(STAND_IN_LOGGING.to_owned()),
        ));
    }
    for (name, labels) in &input.namespaces {
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(name.clone());
        namespace.metadata.labels = Some(labels.clone());
        objects.namespaces.push(namespace);
    }
    for ((namespace, name), values) in &input.secrets {
        let mut secret = Secret {
            data: Some(
                values
                    .iter()
                    .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        };
        secret.metadata.name = Some(name.clone());
        secret.metadata.namespace = Some(namespace.clone());
        objects.secrets.push(secret);
    }
    let resolution = model::resolve(&objects.inventory());
    let sources: BTreeMap<ObjectKey, &Converted> = converted
        .iter()
        .filter_map(|c| c.object.key().map(|key| (key, c)))
        .collect();
    let mut entries: BTreeMap<SourceId, Vec<Entry>> = BTreeMap::new();
    for (key, problems) in &resolution.problems {
        let Some(source) = sources.get(key) else {
            continue;
        };
        for problem in problems {
            entries
                .entry(source.source.clone())
                .or_default()
                .push(problem_entry(key, problem));
        }
    }
    let checks = domains
        .iter()
        .map(|domain| {
            let name = domain
                .logging
                .map_or(STAND_IN_LOGGING.to_owned(), |l| l.id.name.clone());
            let pipeline = resolution.pipelines.iter().find(|p| p.logging == name);
            compare(input, domain, pipeline, &sources)
        })
        .collect();
    (checks, entries)
}

fn problem_entry(key: &ObjectKey, problem: &Problem) -> Entry {
    let status = if TO_DO_REASONS.contains(&problem.reason) {
        Status::ToDo
    } else if problem.is_warning() || CHANGED_REASONS.contains(&problem.reason) {
        Status::Changed
    } else {
        Status::NotConverted
    };
    let lead = match status {
        Status::ToDo => "before switching",
        Status::Changed => "Sluice will report",
        _ => "Sluice would leave this out",
    };
    Entry {
        status,
        field: format!("(Sluice {key}) {}", problem.field),
        line: 0,
        target: None,
        message: format!("{lead}: {} ({})", problem.message, problem.reason),
    }
}

/// Sluice's side of the comparison for one pipeline.
struct SluiceRouter<'p> {
    pipeline: &'p Pipeline,
    candidates: Candidates,
    /// Each flow's (and the default flow's) label and outputs, named by source objects.
    flows: BTreeMap<ObjectKey, (String, BTreeSet<String>)>,
}

impl<'p> SluiceRouter<'p> {
    fn new(pipeline: &'p Pipeline, sources: &BTreeMap<ObjectKey, &Converted>) -> Self {
        let mut flows = BTreeMap::new();
        for flow in &pipeline.flows {
            let label = sources
                .get(&flow.key)
                .map_or_else(|| flow.key.to_string(), |c| c.source.to_string());
            flows.insert(
                flow.key.clone(),
                (label, declared_outputs(&flow.key, sources)),
            );
        }
        if let Some(default) = &pipeline.default_flow {
            let logging = sources
                .get(&default.key)
                .map(|c| c.source.name.clone())
                .unwrap_or_default();
            flows.insert(
                default.key.clone(),
                (
                    default_flow_label(&logging),
                    declared_outputs(&default.key, sources),
                ),
            );
        }
        Self {
            pipeline,
            candidates: Candidates::new(pipeline.flows.iter().map(|f| &*f.matcher)),
            flows,
        }
    }

    /// Where Sluice sends `record`: `routing::route` over the flows that can take a record of
    /// its namespace (the same answer as over all, routing::Candidates).
    fn destination(&self, record: &Record) -> Destination {
        let mut destination = Destination::default();
        let indices = self.candidates.for_namespace(&record.namespace);
        let matchers = indices.iter().map(|i| &*self.pipeline.flows[*i].matcher);
        let taken: Vec<&ObjectKey> = match routing::route(matchers, &self.pipeline.watched, record)
        {
            Routed::Unwatched => Vec::new(),
            Routed::Flows(local) => local
                .into_iter()
                .map(|l| &self.pipeline.flows[indices[l]].key)
                .collect(),
            Routed::Default => self.pipeline.default_flow.iter().map(|d| &d.key).collect(),
        };
        for key in taken {
            if let Some((label, outputs)) = self.flows.get(key) {
                destination.0.insert(label.clone(), outputs.clone());
            }
        }
        destination
    }
}

/// The outputs a converted flow (or a Logging's default flow) names, as source objects.
fn declared_outputs(
    flow: &ObjectKey,
    sources: &BTreeMap<ObjectKey, &Converted>,
) -> BTreeSet<String> {
    let Some(object) = sources.get(flow) else {
        return BTreeSet::new();
    };
    let (namespace, local, global): (Option<String>, Vec<String>, Vec<String>) =
        match &object.object {
            SluiceObject::Flow(f) => (
                f.metadata.namespace.clone(),
                f.spec.local_output_refs.clone(),
                f.spec.global_output_refs.clone(),
            ),
            SluiceObject::ClusterFlow(f) => (None, Vec::new(), f.spec.global_output_refs.clone()),
            SluiceObject::Logging(l) => (
                None,
                Vec::new(),
                l.spec
                    .default_flow
                    .as_ref()
                    .map(|d| d.global_output_refs.clone())
                    .unwrap_or_default(),
            ),
            _ => return BTreeSet::new(),
        };
    let mut outputs = BTreeSet::new();
    for name in local {
        let key = ObjectKey::namespaced(
            model::Kind::Output,
            namespace.as_deref().unwrap_or_default(),
            &name,
        );
        if let Some(c) = sources.get(&key) {
            outputs.insert(c.source.to_string());
        }
    }
    for name in global {
        let key = ObjectKey::cluster(model::Kind::ClusterOutput, &name);
        if let Some(c) = sources.get(&key) {
            outputs.insert(c.source.to_string());
        }
    }
    outputs
}

fn compare(
    input: &Input,
    domain: &Domain<'_>,
    pipeline: Option<&Pipeline>,
    sources: &BTreeMap<ObjectKey, &Converted>,
) -> RoutingCheck {
    let router = incumbent::router(domain);
    let sluice = pipeline.map(|p| SluiceRouter::new(p, sources));
    let records = sample(input, domain);
    let namespaces: BTreeSet<&str> = records.iter().map(|r| r.namespace.as_str()).collect();
    let mut classes: BTreeMap<(Destination, Destination), (String, usize)> = BTreeMap::new();
    for record in &records {
        let incumbent = router.destination(record);
        let sluice = sluice
            .as_ref()
            .map(|s| s.destination(record))
            .unwrap_or_default();
        if incumbent != sluice {
            let class = classes
                .entry((incumbent, sluice))
                .or_insert_with(|| (describe(record), 0));
            class.1 += 1;
        }
    }
    RoutingCheck {
        logging: domain.logging.map_or_else(
            || "(no Logging in the input)".to_owned(),
            |l| format!("Logging {}", l.id.name),
        ),
        records: records.len(),
        namespaces: namespaces.len(),
        divergences: classes
            .into_iter()
            .map(|((incumbent, sluice), (example, records))| Divergence {
                example,
                records,
                incumbent,
                sluice,
            })
            .collect(),
    }
}

fn describe(record: &Record) -> String {
    let mut text = format!("namespace {}", record.namespace);
    if !record.namespace_labels.is_empty() {
        let labels: Vec<String> = record
            .namespace_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        text.push_str(&format!(" (labels {})", labels.join(",")));
    }
    if !record.labels.is_empty() {
        let labels: Vec<String> = record
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        text.push_str(&format!(", labels {}", labels.join(",")));
    }
    if !record.host.is_empty() {
        text.push_str(&format!(", host {}", record.host));
    }
    if !record.container.is_empty() {
        text.push_str(&format!(", container {}", record.container));
    }
    text
}

/// Every selector body (`select` or `exclude`) of the flows.
fn selector_bodies<'a>(flows: &[&'a SourceObject]) -> Vec<&'a Node> {
    let mut bodies = Vec::new();
    for flow in flows {
        if let Some(Value::Seq(entries)) = flow.spec.get("match").map(|m| &m.value) {
            for entry in entries {
                bodies.extend(entry.get("select"));
                bodies.extend(entry.get("exclude"));
            }
        }
    }
    bodies
}

/// The values of one namespace's records: pod label sets, hosts, containers.
#[derive(Default)]
struct Values {
    label_sets: BTreeSet<BTreeMap<String, String>>,
    hosts: BTreeSet<String>,
    containers: BTreeSet<String>,
}

impl Values {
    /// Nothing, one unnamed value of each, and what the flows name: every label set (and all
    /// of them together), host and container.
    fn of(flows: &[&SourceObject]) -> Values {
        let mut values = Values {
            label_sets: BTreeSet::from([BTreeMap::new()]),
            hosts: BTreeSet::from([String::new(), UNLISTED_HOST.to_owned()]),
            containers: BTreeSet::from([String::new(), UNLISTED_CONTAINER.to_owned()]),
        };
        let mut union = BTreeMap::new();
        let mut add_labels = |labels: BTreeMap<String, String>, values: &mut Values| {
            for (k, v) in &labels {
                union.entry(k.clone()).or_insert_with(|| v.clone());
            }
            values.label_sets.insert(labels);
        };
        for body in selector_bodies(flows) {
            if let Some(labels) = body.get("labels").and_then(string_map) {
                add_labels(labels, &mut values);
            }
            values
                .hosts
                .extend(body.get("hosts").and_then(string_list).unwrap_or_default());
            values.containers.extend(
                body.get("container_names")
                    .and_then(string_list)
                    .unwrap_or_default(),
            );
        }
        for flow in flows {
            if let Some(labels) = flow.spec.get("selectors").and_then(string_map) {
                add_labels(labels, &mut values);
            }
        }
        values.label_sets.insert(union);
        values
    }
}

/// The records to compare, per namespace (every namespace the input names, one it names
/// nowhere, one per `namespace_labels` set a ClusterFlow names): pod label sets × hosts ×
/// containers drawn from the ClusterFlows and that namespace's Flows, at most
/// [`MAX_RECORDS_PER_NAMESPACE`] (thinned evenly).
pub fn sample(input: &Input, domain: &Domain<'_>) -> Vec<Record> {
    let cluster_flows: Vec<&SourceObject> = domain.cluster_flows.clone();
    let mut namespaces: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for name in domain.known_namespaces(input) {
        let labels = input.namespaces.get(&name).cloned().unwrap_or_default();
        namespaces.insert(name, labels);
    }
    namespaces.insert(UNLISTED_NAMESPACE.to_owned(), BTreeMap::new());
    for (index, body) in selector_bodies(&cluster_flows).iter().enumerate() {
        if let Some(labels) = body
            .get("namespace_labels")
            .and_then(string_map)
            .filter(|l| !l.is_empty())
        {
            namespaces.insert(format!("{UNLISTED_NAMESPACE}-{index}"), labels);
        }
    }
    let mut records = Vec::new();
    for (namespace, namespace_labels) in &namespaces {
        let mut flows = cluster_flows.clone();
        flows.extend(
            domain
                .flows
                .iter()
                .filter(|f| f.id.namespace.as_deref() == Some(namespace.as_str())),
        );
        let values = Values::of(&flows);
        let total = values.label_sets.len() * values.hosts.len() * values.containers.len();
        let stride = total.div_ceil(MAX_RECORDS_PER_NAMESPACE).max(1);
        let mut index = 0usize;
        for labels in &values.label_sets {
            for host in &values.hosts {
                for container in &values.containers {
                    if index.is_multiple_of(stride) {
                        records.push(Record {
                            namespace: namespace.clone(),
                            namespace_labels: namespace_labels.clone(),
                            labels: labels.clone(),
                            host: host.clone(),
                            container: container.clone(),
                        });
                    }
                    index += 1;
                }
            }
        }
    }
    records
}
