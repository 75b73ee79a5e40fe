//! `sluice migrate`: converts kube-logging/logging-operator objects
//! (`logging.banzaicloud.io/v1beta1`) into Sluice objects, with a report of what became of
//! every source field and a check that the converted objects route a sample of records to the
//! same flows and outputs as logging-operator's own routing would. Pure: the shell reads the
//! documents (from files or a cluster) and writes what this returns (docs/migrate.md).

mod check;
mod fields;
mod filters;
mod flows;
pub mod incumbent;
mod logging;
mod outputs;
pub mod report;
pub mod source;
mod write;
pub mod yaml;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;

use crate::api::{
    ClusterFlow, ClusterOutput, Flow, Logging, LoggingSpec, NamespaceSelector, Output,
};
use crate::model::{self, Kind, ObjectKey};
use crate::routing::Watched;

use fields::Fields;
use report::{ObjectReport, Report, Status};
pub use source::{
    Document, INCUMBENT_API_VERSION, Input, MigrateError, SourceId, SourceKind, SourceObject,
};
pub use write::OutputFile;

/// One Sluice object the migration produced.
#[derive(Clone, Debug, PartialEq)]
pub enum SluiceObject {
    Logging(Box<Logging>),
    ClusterOutput(ClusterOutput),
    ClusterFlow(ClusterFlow),
    Output(Output),
    Flow(Flow),
    /// Credentials a source object held inline, which Sluice only reads from Secrets.
    Secret(Secret),
}

impl SluiceObject {
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            SluiceObject::Logging(o) => &o.metadata,
            SluiceObject::ClusterOutput(o) => &o.metadata,
            SluiceObject::ClusterFlow(o) => &o.metadata,
            SluiceObject::Output(o) => &o.metadata,
            SluiceObject::Flow(o) => &o.metadata,
            SluiceObject::Secret(o) => &o.metadata,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            SluiceObject::Logging(_) => "Logging",
            SluiceObject::ClusterOutput(_) => "ClusterOutput",
            SluiceObject::ClusterFlow(_) => "ClusterFlow",
            SluiceObject::Output(_) => "Output",
            SluiceObject::Flow(_) => "Flow",
            SluiceObject::Secret(_) => "Secret",
        }
    }

    /// `Kind namespace/name`, as the report names it.
    pub fn label(&self) -> String {
        let meta = self.metadata();
        let name = meta.name.as_deref().unwrap_or_default();
        match &meta.namespace {
            Some(ns) => format!("{} {ns}/{name}", self.kind()),
            None => format!("{} {name}", self.kind()),
        }
    }

    /// The model's key of a Sluice kind (`None` for Secrets).
    pub fn key(&self) -> Option<ObjectKey> {
        let meta = self.metadata();
        let name = meta.name.as_deref().unwrap_or_default();
        let namespace = meta.namespace.as_deref().unwrap_or_default();
        match self {
            SluiceObject::Logging(_) => Some(ObjectKey::cluster(Kind::Logging, name)),
            SluiceObject::ClusterOutput(_) => Some(ObjectKey::cluster(Kind::ClusterOutput, name)),
            SluiceObject::ClusterFlow(_) => Some(ObjectKey::cluster(Kind::ClusterFlow, name)),
            SluiceObject::Output(_) => Some(ObjectKey::namespaced(Kind::Output, namespace, name)),
            SluiceObject::Flow(_) => Some(ObjectKey::namespaced(Kind::Flow, namespace, name)),
            SluiceObject::Secret(_) => None,
        }
    }
}

/// A Sluice object and the logging-operator object it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Converted {
    pub object: SluiceObject,
    pub source: SourceId,
    /// `file:line` of the source object.
    pub source_place: String,
}

/// What `sluice migrate` produces.
#[derive(Clone, Debug, PartialEq)]
pub struct Migration {
    pub converted: Vec<Converted>,
    pub report: Report,
}

impl Migration {
    /// The Sluice objects, one file per namespace (`_cluster.yaml` for cluster-scoped ones),
    /// in a stable order, each object preceded by a comment naming its source.
    pub fn files(&self) -> Result<Vec<OutputFile>, String> {
        write::files(&self.converted)
    }

    /// The converted objects as the model reads them.
    pub fn objects(&self) -> model::Objects {
        objects(&self.converted)
    }
}

/// Converted objects as the model reads them.
fn objects(converted: &[Converted]) -> model::Objects {
    let mut objects = model::Objects::default();
    for c in converted {
        match &c.object {
            SluiceObject::Logging(o) => objects.loggings.push((**o).clone()),
            SluiceObject::ClusterOutput(o) => objects.cluster_outputs.push(o.clone()),
            SluiceObject::ClusterFlow(o) => objects.cluster_flows.push(o.clone()),
            SluiceObject::Output(o) => objects.outputs.push(o.clone()),
            SluiceObject::Flow(o) => objects.flows.push(o.clone()),
            SluiceObject::Secret(o) => objects.secrets.push(o.clone()),
        }
    }
    objects
}

/// A Logging spec with nothing but its control namespace.
fn logging_spec(control_namespace: String) -> LoggingSpec {
    LoggingSpec {
        control_namespace,
        watch_namespaces: Vec::new(),
        watch_namespace_selector: None,
        agent: None,
        aggregator: None,
        tls: None,
        default_flow: None,
        error_output_ref: None,
        global_filters: Vec::new(),
        tenant_limits: None,
        reloader: None,
    }
}

/// Converts the documents. Malformed input (a document that is no object, a field of the
/// wrong type) stops it with every error found; anything well-formed that Sluice cannot
/// express is reported, never an error.
pub fn migrate(documents: &[Document]) -> Result<Migration, Vec<MigrateError>> {
    let input = source::read(documents)?;
    let mut state = State::new(&input);
    state.convert();
    if !state.errors.is_empty() {
        return Err(state.errors);
    }
    let mut migration = state.finish();
    let (checks, problem_entries) = check::check(&input, &migration.converted, &domains(&input));
    migration.report.checks = checks;
    for (source, entries) in problem_entries {
        if let Some(object) = migration
            .report
            .objects
            .iter_mut()
            .find(|o| o.source == source)
        {
            let line = object.line;
            object.entries.extend(entries.into_iter().map(|mut e| {
                e.line = line;
                e
            }));
        }
    }
    let secrets_missing = migration
        .report
        .objects
        .iter()
        .flat_map(|o| &o.entries)
        .any(|e| e.status == Status::ToDo);
    if input.secrets.is_empty() && secrets_missing {
        migration.report.notes.push("no Secrets were read (none in the input, and never from a cluster): every Secret the converted objects reference is listed as `to do`; it must exist where Sluice reads it before switching".to_owned());
    }
    Ok(migration)
}

/// One logging-operator Logging and what is part of it, by logging-operator's rules.
#[derive(Clone, Debug)]
pub struct Domain<'a> {
    /// `None`: the input holds no Logging; everything is read as one.
    pub logging: Option<&'a SourceObject>,
    /// The Logging's `spec.loggingRef`: objects with the same one belong to it.
    pub logging_ref: String,
    pub control_namespace: Option<String>,
    pub allow_cluster_resources_from_all_namespaces: bool,
    /// Namespaces whose Flows and Outputs logging-operator reads for this Logging.
    pub watched: Watched,
    /// Namespaces whose logs reach this Logging's aggregator: all, except for the tenants of
    /// a LoggingRoute, which get their watched namespaces only.
    pub collects: Watched,
    /// FluentbitAgents of this Logging (the Logging itself when it has `spec.fluentbit`).
    pub agents: Vec<&'a SourceObject>,
    pub fluentd_config: Option<&'a SourceObject>,
    pub flows: Vec<&'a SourceObject>,
    pub cluster_flows: Vec<&'a SourceObject>,
    pub outputs: Vec<&'a SourceObject>,
    pub cluster_outputs: Vec<&'a SourceObject>,
}

impl Domain<'_> {
    /// The name of the Sluice Logging it becomes.
    pub fn name(&self) -> String {
        self.logging
            .map(|l| l.id.name.clone())
            .unwrap_or_else(|| "(no Logging in the input)".to_owned())
    }

    /// Whether the object's namespace counts as the control namespace (cluster kinds written
    /// without a namespace are read as living there).
    fn in_control_namespace(&self, object: &SourceObject) -> bool {
        match (&self.control_namespace, &object.id.namespace) {
            (_, None) | (None, _) => true,
            (Some(control), Some(ns)) => control == ns,
        }
    }

    /// The agent's kubernetes filter setting `key` (`On`/`Off`), from the first agent.
    fn agent_filter_setting(&self, key: &str) -> Option<String> {
        self.agents.first().and_then(|agent| {
            let spec = if agent.id.kind == SourceKind::Logging {
                agent.spec.get("fluentbit")?
            } else {
                &agent.spec
            };
            spec.get("filterKubernetes")?.get(key)?.scalar_text()
        })
    }

    /// Whether the agent attaches pod labels (`filterKubernetes.Labels`, default On).
    pub fn attaches_labels(&self) -> bool {
        !self
            .agent_filter_setting("Labels")
            .is_some_and(|v| v.eq_ignore_ascii_case("off"))
    }

    /// Whether the agent attaches namespace labels (`filterKubernetes.namespace_labels`,
    /// default On in current logging-operator).
    pub fn attaches_namespace_labels(&self) -> bool {
        !self
            .agent_filter_setting("namespace_labels")
            .is_some_and(|v| v.eq_ignore_ascii_case("off"))
    }

    /// Whether pods can opt out with `fluentbit.io/exclude` (`K8S-Logging.Exclude`, forced
    /// On unless the agent says Off).
    pub fn honours_pod_opt_out(&self) -> bool {
        !self
            .agent_filter_setting("K8S-Logging.Exclude")
            .is_some_and(|v| v.eq_ignore_ascii_case("off"))
    }

    /// The separator of a global `dedot` filter that rewrites nested keys (so pod label keys
    /// too) before logging-operator routes: its router then sees the rewritten labels.
    pub fn global_label_dedot(&self) -> Option<String> {
        let filters = self.logging?.spec.get("globalFilters")?;
        let yaml::Value::Seq(items) = &filters.value else {
            return None;
        };
        items.iter().find_map(|filter| {
            let dedot = filter.get("dedot")?;
            let nested = dedot.get("de_dot_nested").and_then(yaml::Node::scalar_text);
            (nested.as_deref() == Some("true")).then(|| {
                dedot
                    .get("de_dot_separator")
                    .and_then(yaml::Node::scalar_text)
                    .unwrap_or_else(|| "_".to_owned())
            })
        })
    }

    /// The ClusterOutput a name refers to, as logging-operator finds it (the first by
    /// namespace and name among the Logging's ClusterOutputs).
    pub fn cluster_output(&self, name: &str) -> Option<&SourceObject> {
        self.cluster_outputs
            .iter()
            .copied()
            .find(|o| o.id.name == name)
    }

    /// The Output a Flow of `namespace` refers to by name.
    pub fn output(&self, namespace: &str, name: &str) -> Option<&SourceObject> {
        self.outputs
            .iter()
            .copied()
            .find(|o| o.id.name == name && o.id.namespace.as_deref() == Some(namespace))
    }

    /// Every namespace the input names: Namespace objects, objects' namespaces, the
    /// Logging's watched and control namespaces. `namespaces_regex` is expanded against
    /// these.
    pub fn known_namespaces(&self, input: &Input) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = input.namespaces.keys().cloned().collect();
        names.extend(input.objects.iter().filter_map(|o| o.id.namespace.clone()));
        names.extend(self.control_namespace.clone());
        if let Watched::Only(set) = &self.watched {
            names.extend(set.iter().cloned());
        }
        names
    }
}

/// Reads a Kubernetes `LabelSelector` the way `model::selector_matches` evaluates it.
fn try_label_selector(node: &yaml::Node) -> Result<NamespaceSelector, String> {
    serde_json::from_value(to_json(node))
        .map_err(|e| format!("not a label selector (matchLabels, matchExpressions): {e}"))
}

/// [`try_label_selector`] where the converter reports a bad selector as an input error;
/// until then, one that cannot be read selects nothing.
fn label_selector(node: &yaml::Node) -> NamespaceSelector {
    try_label_selector(node).unwrap_or_else(|_| NamespaceSelector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![crate::api::LabelSelectorRequirement {
            key: String::new(),
            operator: crate::api::LabelSelectorOperator::Exists,
            values: Vec::new(),
        }],
    })
}

/// A node as JSON, for the pieces that are plain Kubernetes types on both sides.
fn to_json(node: &yaml::Node) -> serde_json::Value {
    use yaml::Value;
    match &node.value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
        }
        Value::String(s) => s.clone().into(),
        Value::Seq(items) => items.iter().map(to_json).collect(),
        Value::Map(entries) => entries
            .iter()
            .map(|e| (e.key.clone(), to_json(&e.node)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

/// The namespaces a Logging's `watchNamespaces` and `watchNamespaceSelector` name, as
/// logging-operator unites them (both unset: all). The selector is evaluated against the
/// Namespaces of the input.
fn watched(spec: &yaml::Node, input: &Input) -> Watched {
    let listed = spec
        .get("watchNamespaces")
        .and_then(source::string_list)
        .unwrap_or_default();
    let selector = spec.get("watchNamespaceSelector").filter(|n| !n.is_null());
    if listed.is_empty() && selector.is_none() {
        return Watched::All;
    }
    let mut set: BTreeSet<String> = listed.into_iter().collect();
    if let Some(selector) = selector {
        let selector = label_selector(selector);
        for (name, labels) in &input.namespaces {
            if model::selector_matches(&selector, labels) {
                set.insert(name.clone());
            }
        }
    }
    Watched::Only(set)
}

fn label_selector_matches(selector: &yaml::Node, labels: &BTreeMap<String, String>) -> bool {
    model::selector_matches(&label_selector(selector), labels)
}

/// Every Logging of the input with what belongs to it; one implicit domain when the input
/// holds no Logging.
pub fn domains(input: &Input) -> Vec<Domain<'_>> {
    let of_kind = |kind: SourceKind| {
        input
            .objects
            .iter()
            .filter(move |o| o.id.kind == kind)
            .collect::<Vec<_>>()
    };
    let loggings = of_kind(SourceKind::Logging);
    let routes = of_kind(SourceKind::LoggingRoute);
    let mut domains: Vec<Domain<'_>> = if loggings.is_empty() {
        vec![Domain {
            logging: None,
            logging_ref: String::new(),
            control_namespace: None,
            allow_cluster_resources_from_all_namespaces: true,
            watched: Watched::All,
            collects: Watched::All,
            agents: Vec::new(),
            fluentd_config: None,
            flows: Vec::new(),
            cluster_flows: Vec::new(),
            outputs: Vec::new(),
            cluster_outputs: Vec::new(),
        }]
    } else {
        loggings
            .iter()
            .map(|logging| {
                let spec = &logging.spec;
                let watched = watched(spec, input);
                // A LoggingRoute tenant receives, per namespace it watches, the logs the
                // source Logging's agent tails for it, and nothing else.
                let tenant = routes.iter().any(|route| {
                    route
                        .spec
                        .get("targets")
                        .is_some_and(|targets| label_selector_matches(targets, &logging.labels))
                });
                Domain {
                    logging: Some(*logging),
                    logging_ref: logging.logging_ref(),
                    control_namespace: spec
                        .get("controlNamespace")
                        .and_then(yaml::Node::scalar_text),
                    allow_cluster_resources_from_all_namespaces: spec
                        .get("allowClusterResourcesFromAllNamespaces")
                        .and_then(yaml::Node::scalar_text)
                        .as_deref()
                        == Some("true"),
                    collects: if tenant {
                        watched.clone()
                    } else {
                        Watched::All
                    },
                    watched,
                    agents: Vec::new(),
                    fluentd_config: None,
                    flows: Vec::new(),
                    cluster_flows: Vec::new(),
                    outputs: Vec::new(),
                    cluster_outputs: Vec::new(),
                }
            })
            .collect()
    };
    for domain in &mut domains {
        let implicit = domain.logging.is_none();
        let belongs = |o: &SourceObject| implicit || o.logging_ref() == domain.logging_ref;
        if let Some(logging) = domain.logging
            && logging.spec.get("fluentbit").is_some_and(|n| !n.is_null())
        {
            domain.agents.push(logging);
        }
        for object in &input.objects {
            if !belongs(object) {
                continue;
            }
            let namespace_watched = object
                .id
                .namespace
                .as_deref()
                .is_some_and(|ns| domain.watched.contains(ns));
            let cluster_allowed = domain.allow_cluster_resources_from_all_namespaces
                || domain.in_control_namespace(object);
            match object.id.kind {
                SourceKind::FluentbitAgent => domain.agents.push(object),
                SourceKind::FluentdConfig if domain.in_control_namespace(object) => {
                    domain.fluentd_config.get_or_insert(object);
                }
                SourceKind::Flow if namespace_watched => domain.flows.push(object),
                SourceKind::Output if namespace_watched => domain.outputs.push(object),
                SourceKind::ClusterFlow if cluster_allowed => domain.cluster_flows.push(object),
                SourceKind::ClusterOutput if cluster_allowed => domain.cluster_outputs.push(object),
                _ => {}
            }
        }
    }
    domains
}

/// Why an object is part of no Logging, as logging-operator decides it.
fn unclaimed_reason(object: &SourceObject, domains: &[Domain<'_>]) -> String {
    let same_ref: Vec<&Domain<'_>> = domains
        .iter()
        .filter(|d| d.logging.is_none() || d.logging_ref == object.logging_ref())
        .collect();
    if same_ref.is_empty() {
        let reference = object.logging_ref();
        return if reference.is_empty() {
            "no Logging of the input has an empty loggingRef, so logging-operator gives this object to none".to_owned()
        } else {
            format!(
                "no Logging of the input has loggingRef {reference:?}, so logging-operator gives this object to none"
            )
        };
    }
    match object.id.kind {
        SourceKind::Flow | SourceKind::Output => {
            "outside the Logging's watchNamespaces: logging-operator does not read it".to_owned()
        }
        SourceKind::ClusterFlow | SourceKind::ClusterOutput | SourceKind::FluentdConfig => {
            "outside the Logging's controlNamespace (and allowClusterResourcesFromAllNamespaces is off): logging-operator does not read it".to_owned()
        }
        _ => "logging-operator gives this object to no Logging".to_owned(),
    }
}

/// The conversion in progress.
struct State<'a> {
    input: &'a Input,
    domains: Vec<Domain<'a>>,
    converted: Vec<Converted>,
    reports: BTreeMap<SourceId, ObjectReport>,
    errors: Vec<MigrateError>,
    notes: Vec<String>,
}

/// Sluice names of converted outputs, by the logging-operator object they came from.
#[derive(Default)]
struct OutputNames {
    names: BTreeMap<SourceId, String>,
}

impl<'a> State<'a> {
    fn new(input: &'a Input) -> Self {
        Self {
            input,
            domains: domains(input),
            converted: Vec::new(),
            reports: BTreeMap::new(),
            errors: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Reports the object (once) with the entries gathered in `fields`.
    fn record(&mut self, fields: Fields<'_>, targets: Vec<String>) {
        let object = fields.object;
        self.errors.extend(fields.errors);
        let report = self
            .reports
            .entry(object.id.clone())
            .or_insert_with(|| ObjectReport {
                source: object.id.clone(),
                file: object.file.clone(),
                line: object.line,
                targets: Vec::new(),
                entries: Vec::new(),
            });
        report.targets.extend(targets);
        report.entries.extend(fields.entries);
    }

    fn push(&mut self, object: SluiceObject, source: &SourceObject) -> String {
        let label = object.label();
        self.converted.push(Converted {
            object,
            source: source.id.clone(),
            source_place: source.place(source.line),
        });
        label
    }

    fn convert(&mut self) {
        let domains = self.domains.clone();
        let several = domains.iter().filter(|d| d.logging.is_some()).count() > 1;
        if domains.iter().all(|d| d.logging.is_none()) {
            self.notes.push("the input holds no logging-operator Logging: every object is read as part of one, ClusterFlows and ClusterOutputs from any namespace, and no Sluice Logging is written".to_owned());
        }
        let cluster_names = cluster_names(&domains);
        let mut done: BTreeSet<SourceId> = BTreeSet::new();
        for domain in &domains {
            let logging_ref = several.then(|| domain.name());
            let mut names = OutputNames::default();
            for object in domain.cluster_outputs.iter().chain(&domain.outputs) {
                if !done.insert(object.id.clone()) {
                    continue;
                }
                let mut fields = Fields::new(object);
                let name = sluice_name(&cluster_names, &mut fields);
                let converted =
                    outputs::convert(&mut fields, domain, self.input, &name, logging_ref.clone());
                let mut targets = Vec::new();
                if let Some(converted) = converted {
                    for secret in converted.secrets {
                        targets.push(self.push(SluiceObject::Secret(secret), object));
                    }
                    targets.push(self.push(converted.object, object));
                    names.names.insert(object.id.clone(), name.clone());
                }
                self.record(fields, targets);
            }
            let refs = flows::Refs {
                domain,
                names: &names.names,
            };
            for object in domain.cluster_flows.iter().chain(&domain.flows) {
                if !done.insert(object.id.clone()) {
                    continue;
                }
                let mut fields = Fields::new(object);
                let name = sluice_name(&cluster_names, &mut fields);
                let converted =
                    flows::convert(&mut fields, &refs, self.input, &name, logging_ref.clone());
                let targets = converted
                    .map(|o| vec![self.push(o, object)])
                    .unwrap_or_default();
                self.record(fields, targets);
            }
            if let Some(source) = domain.logging {
                let converted = logging::convert(domain, &refs, self.input);
                let label = self.push(SluiceObject::Logging(Box::new(converted.logging)), source);
                for fields in converted.fields {
                    let dropped = fields
                        .entries
                        .iter()
                        .any(|e| e.field == "spec" && e.status == Status::NotConverted);
                    let targets = if dropped {
                        Vec::new()
                    } else {
                        vec![label.clone()]
                    };
                    self.record(fields, targets);
                }
            }
        }
        // Everything logging-operator gives to no Logging, and kinds Sluice has nothing for.
        for object in &self.input.objects {
            if self.reports.contains_key(&object.id) {
                continue;
            }
            let mut fields = Fields::new(object);
            match &object.id.kind {
                SourceKind::Other(kind) => fields.about_object(
                    Status::NotConverted,
                    "spec",
                    None,
                    format!("Sluice has no equivalent of logging-operator's {kind} (syslog-ng aggregators, host and event tailers are not part of Sluice)"),
                ),
                SourceKind::LoggingRoute => logging::logging_route(&mut fields),
                _ => fields.about_object(
                    Status::NotNeeded,
                    "spec",
                    None,
                    unclaimed_reason(object, &self.domains),
                ),
            }
            self.record(fields, Vec::new());
        }
    }

    fn finish(self) -> Migration {
        let mut objects: Vec<ObjectReport> = self.reports.into_values().collect();
        for object in &mut objects {
            object
                .entries
                .sort_by(|a, b| (a.line, &a.field).cmp(&(b.line, &b.field)));
        }
        Migration {
            converted: self.converted,
            report: Report {
                objects,
                checks: Vec::new(),
                skipped_documents: self.input.skipped,
                notes: self.notes,
            },
        }
    }
}

/// The name of the object in Sluice; a renamed one gets a report line.
fn sluice_name(cluster_names: &BTreeMap<SourceId, String>, fields: &mut Fields<'_>) -> String {
    let id = &fields.object.id;
    let Some(name) = cluster_names
        .get(id)
        .filter(|name| **name != id.name)
        .cloned()
    else {
        return id.name.clone();
    };
    let message = format!(
        "{}s are cluster-scoped in Sluice and one in another namespace is called {:?} too",
        id.kind.name(),
        id.name
    );
    fields.about_object(
        Status::Changed,
        "metadata.name",
        Some(format!("metadata.name {name}")),
        message,
    );
    name
}

/// Sluice names of ClusterFlows and ClusterOutputs: their own, unless two of a kind from
/// different namespaces share one (cluster-scoped in Sluice), then `<namespace>-<name>`.
fn cluster_names(domains: &[Domain<'_>]) -> BTreeMap<SourceId, String> {
    let mut names = BTreeMap::new();
    for kind in [SourceKind::ClusterFlow, SourceKind::ClusterOutput] {
        let mut by_name: BTreeMap<&str, BTreeSet<&SourceId>> = BTreeMap::new();
        for domain in domains {
            for object in domain.cluster_flows.iter().chain(&domain.cluster_outputs) {
                if object.id.kind == kind {
                    by_name
                        .entry(&object.id.name)
                        .or_default()
                        .insert(&object.id);
                }
            }
        }
        for (name, ids) in by_name {
            for id in &ids {
                let sluice = if ids.len() > 1 {
                    format!("{}-{name}", id.namespace.as_deref().unwrap_or("cluster"))
                } else {
                    name.to_owned()
                };
                names.insert((*id).clone(), sluice);
            }
        }
    }
    names
}
