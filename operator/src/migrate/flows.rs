//! Flows and ClusterFlows: `match` (and the deprecated `selectors`), output references and
//! filters. logging-operator's router ends a flow's rules with "no rule matched: not taken",
//! Sluice with "only excludes: taken", so a flow without a select rule gets a final
//! `exclude: {}` to keep taking nothing (docs/routing.md, "Exclude-only flows").

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{
    ClusterFlow, ClusterFlowMatch, ClusterFlowSelector, ClusterFlowSpec, Flow, FlowMatch,
    FlowSelector, FlowSpec,
};
use crate::model::validate::regex;

use super::fields::{At, Fields};
use super::filters::{self, FilterPlace};
use super::report::Status;
use super::source::{Input, SourceId, SourceKind};
use super::{Domain, SluiceObject};

/// Resolves output references the way logging-operator does, to the Sluice names of the
/// outputs that were converted.
pub struct Refs<'d, 'a> {
    pub domain: &'d Domain<'a>,
    pub names: &'d BTreeMap<SourceId, String>,
}

impl Refs<'_, '_> {
    /// `globalOutputRefs` entries (of a Flow when `protected_allowed` is false).
    pub fn global(
        &self,
        fields: &mut Fields<'_>,
        list: &At<'_>,
        target: &str,
        protected_allowed: bool,
    ) -> Vec<String> {
        let mut names = Vec::new();
        for item in fields.items(list) {
            let Some(name) = fields.string(&item) else {
                continue;
            };
            let Some(output) = self.domain.cluster_output(&name) else {
                fields.not_needed(&item, "names no ClusterOutput of the Logging: logging-operator reports the reference as dangling and sends nothing there");
                continue;
            };
            let protected = output
                .spec
                .get("protected")
                .and_then(super::yaml::Node::scalar_text)
                .as_deref()
                == Some("true");
            if protected && !protected_allowed {
                fields.not_needed(&item, format!("ClusterOutput {name} is protected: logging-operator refuses it for a Flow and sends nothing there"));
                continue;
            }
            match self.names.get(&output.id) {
                Some(sluice) => {
                    fields.converted(&item, format!("{target}[{}] {sluice}", names.len()));
                    names.push(sluice.clone());
                }
                None => fields.lost(&item, format!("{} was not converted (see its own lines), so this flow no longer sends to it", output.id)),
            }
        }
        names
    }

    /// A Flow's `localOutputRefs` entries.
    pub fn local(&self, fields: &mut Fields<'_>, list: &At<'_>, namespace: &str) -> Vec<String> {
        let mut names = Vec::new();
        for item in fields.items(list) {
            let Some(name) = fields.string(&item) else {
                continue;
            };
            let Some(output) = self.domain.output(namespace, &name) else {
                fields.not_needed(&item, "names no Output of this namespace: logging-operator reports the reference as dangling and sends nothing there");
                continue;
            };
            match self.names.get(&output.id) {
                Some(sluice) => {
                    fields.converted(&item, format!("spec.localOutputRefs[{}] {sluice}", names.len()));
                    names.push(sluice.clone());
                }
                None => fields.lost(&item, format!("{} was not converted (see its own lines), so this flow no longer sends to it", output.id)),
            }
        }
        names
    }
}

/// One converted rule, before it becomes a Flow's or a ClusterFlow's.
#[derive(Default)]
struct Rule {
    select: bool,
    namespaces: Vec<String>,
    namespace_labels: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    hosts: Vec<String>,
    container_names: Vec<String>,
}

/// Converts a Flow or ClusterFlow; `None` when logging-operator rejects it.
pub fn convert(
    fields: &mut Fields<'_>,
    refs: &Refs<'_, '_>,
    input: &Input,
    name: &str,
    logging_ref: Option<String>,
) -> Option<SluiceObject> {
    let object = fields.object;
    let cluster = object.id.kind == SourceKind::ClusterFlow;
    let spec = At::spec(object);
    let match_list = spec.field("match");
    let selectors = spec.field("selectors");
    if match_list.is_some() && selectors.is_some() {
        fields.about_object(Status::NotNeeded, "spec", None, "logging-operator rejects a flow with both match and selectors, so it never routed anything");
        return None;
    }
    let entries = match_list
        .as_ref()
        .map(|list| fields.items(list))
        .unwrap_or_default();
    if let Some(both) = entries
        .iter()
        .find(|e| e.field("select").is_some() && e.field("exclude").is_some())
    {
        fields.not_needed(both, "logging-operator rejects a match entry with both select and exclude, so this flow never routed anything");
        fields.about_object(
            Status::NotNeeded,
            "spec",
            None,
            "rejected by logging-operator (see the match entry)",
        );
        return None;
    }
    let mut rules: Vec<Rule> = Vec::new();
    for entry in &entries {
        let (at, select) = match (entry.field("select"), entry.field("exclude")) {
            (Some(at), None) => (at, true),
            (None, Some(at)) => (at, false),
            _ => {
                fields.not_needed(entry, "an empty match entry: logging-operator skips it");
                continue;
            }
        };
        if let Some(rule) = selector(
            fields,
            refs.domain,
            input,
            &at,
            select,
            cluster,
            rules.len(),
        ) {
            rules.push(rule);
        }
    }
    if let Some(at) = &selectors {
        // Deprecated: one select rule on pod labels (within the namespace for a Flow).
        let labels = fields.string_map(at);
        if !labels.is_empty() && !refs.domain.attaches_labels() {
            fields.changed(at, None, "never matched: the Logging's agent attaches no pod labels (filterKubernetes.Labels Off); converted to `exclude: {}` so the flow keeps taking nothing");
            rules.push(Rule::default());
        } else {
            fields.converted_note(
                at,
                "spec.match[0].select.labels",
                "the deprecated selectors are one select rule",
            );
            rules.push(Rule {
                select: true,
                labels,
                ..Rule::default()
            });
        }
    }
    if let Some(list) = &match_list
        && !rules.iter().any(|r| r.select)
    {
        // No select rule: logging-operator's router takes nothing; Sluice would take
        // everything except. A final catch-all exclude keeps "nothing".
        let note = if entries.is_empty() {
            "an empty match list: logging-operator's router takes no record with it; converted to a single `exclude: {}` so the flow takes nothing in Sluice either".to_owned()
        } else {
            format!(
                "{}: logging-operator's router takes no record then (its issue #464); converted with a final `exclude: {{}}` (spec.match[{}]) so the flow takes nothing in Sluice either. Delete that entry to take everything the excludes leave, as was probably meant",
                if rules.is_empty() {
                    "no rule is left"
                } else {
                    "only exclude rules"
                },
                rules.len()
            )
        };
        fields.converted_note(list, "spec.match", note);
        rules.push(Rule::default());
    }
    let filters_at = spec.field("filters");
    let filters = filters_at
        .as_ref()
        .map(|at| filters::convert(fields, at, "spec.filters", FilterPlace::Flow))
        .unwrap_or_default();
    let mut global = Vec::new();
    if let Some(at) = spec.field("globalOutputRefs") {
        global = refs.global(fields, &at, "spec.globalOutputRefs", cluster);
    }
    let mut local = Vec::new();
    if let Some(at) = spec.field("localOutputRefs") {
        if cluster {
            fields.not_needed(
                &at,
                "not a field of a ClusterFlow: logging-operator ignores it",
            );
        } else {
            local = refs.local(
                fields,
                &at,
                object.id.namespace.as_deref().unwrap_or_default(),
            );
        }
    }
    if let Some(at) = spec.field("outputRefs") {
        fields.not_needed(&at, "deprecated: logging-operator only reports it and sends nothing there; name the outputs in globalOutputRefs or localOutputRefs");
    }
    for key in ["flowLabel", "includeLabelInRouter"] {
        if let Some(at) = spec.field(key) {
            fields.not_needed(
                &at,
                "the router's label of the flow: Sluice names flows itself",
            );
        }
    }
    if let Some(at) = spec.field("loggingRef") {
        match &logging_ref {
            Some(logging) => fields.converted(&at, format!("spec.loggingRef {logging}")),
            None => fields.not_needed(&at, "the only Logging: Sluice objects without loggingRef belong to the Logging that watches their namespace"),
        }
    }
    fields.sweep(&spec);
    let namespace = object.id.namespace.clone();
    Some(if cluster {
        let mut flow = ClusterFlow::new(
            name,
            ClusterFlowSpec {
                logging_ref,
                match_rules: rules.into_iter().flat_map(cluster_rules).collect(),
                filters,
                global_output_refs: global,
            },
        );
        flow.metadata.namespace = None;
        SluiceObject::ClusterFlow(flow)
    } else {
        let mut flow = Flow::new(
            name,
            FlowSpec {
                logging_ref,
                match_rules: rules.into_iter().map(flow_rule).collect(),
                filters,
                local_output_refs: local,
                global_output_refs: global,
            },
        );
        flow.metadata.namespace = namespace;
        SluiceObject::Flow(flow)
    })
}

/// One `select` or `exclude` body; `None` when it never matched in logging-operator (then
/// leaving it out keeps the routing).
fn selector(
    fields: &mut Fields<'_>,
    domain: &Domain<'_>,
    input: &Input,
    at: &At<'_>,
    select: bool,
    cluster: bool,
    index: usize,
) -> Option<Rule> {
    let action = if select { "select" } else { "exclude" };
    let target = |field: &str| format!("spec.match[{index}].{action}.{field}");
    let mut rule = Rule {
        select,
        ..Rule::default()
    };
    let mut never = Vec::new();
    let mut converted = Vec::new();
    if let Some(field) = at.field("labels") {
        rule.labels = fields.string_map(&field);
        if !rule.labels.is_empty() && !domain.attaches_labels() {
            never.push(
                "the Logging's agent attaches no pod labels (filterKubernetes.Labels Off)"
                    .to_owned(),
            );
        }
        converted.push((field, target("labels")));
    }
    if let Some(field) = at.field("hosts") {
        rule.hosts = fields.strings(&field);
        converted.push((field, target("hosts")));
    }
    if let Some(field) = at.field("container_names") {
        rule.container_names = fields.strings(&field);
        converted.push((field, target("containerNames")));
    }
    if !cluster {
        if let Some(field) = at.field("namespace_labels") {
            let why = if select {
                "not a field of a Flow's select (a Flow only sees its own namespace): logging-operator's API server drops it"
            } else {
                "logging-operator leaves namespace_labels out of a Flow's exclude rule, so the rule never looked at them; converted without them, as it behaved"
            };
            fields.not_needed(&field, why);
        }
        for key in ["namespaces", "namespaces_regex"] {
            if let Some(field) = at.field(key) {
                fields.not_needed(&field, "not a field of a Flow's rule (a Flow only sees its own namespace): logging-operator's API server drops it");
            }
        }
    } else {
        let listed = at.field("namespaces").map(|field| {
            let names = fields.strings(&field);
            converted.push((field, target("namespaces")));
            names
        });
        if let Some(field) = at.field("namespace_labels") {
            rule.namespace_labels = fields.string_map(&field);
            if !rule.namespace_labels.is_empty() && !domain.attaches_namespace_labels() {
                never.push("the Logging's agent attaches no namespace labels (filterKubernetes.namespace_labels Off)".to_owned());
            }
            converted.push((field, target("namespaceLabels")));
        }
        rule.namespaces = listed.clone().unwrap_or_default();
        if let Some(field) = at.field("namespaces_regex") {
            let patterns = fields.strings(&field);
            let known = domain.known_namespaces(input);
            let mut matched = BTreeSet::new();
            let mut broken = Vec::new();
            for pattern in &patterns {
                match regex::ruby_regexp(pattern, onig::RegexOptions::REGEX_OPTION_NONE) {
                    Ok(compiled) => matched.extend(
                        known
                            .iter()
                            .filter(|ns| regex::matches(&compiled, ns))
                            .cloned(),
                    ),
                    Err(reason) => broken.push(format!("{pattern:?} ({reason})")),
                }
            }
            // Both conditions hold in logging-operator's router: listed and matching.
            let selected: Vec<String> = match &listed {
                Some(names) if !names.is_empty() => names
                    .iter()
                    .filter(|ns| matched.contains(*ns))
                    .cloned()
                    .collect(),
                _ => matched.into_iter().collect(),
            };
            if !broken.is_empty() {
                never.push(format!(
                    "its namespaces_regex does not compile: {}",
                    broken.join(", ")
                ));
            } else if selected.is_empty() {
                never.push("its namespaces_regex matches none of the namespaces known to the migration (and listed)".to_owned());
            }
            fields.changed(
                &field,
                Some(target("namespaces")),
                format!(
                    "Sluice selects namespaces by name or labels, not by regex: expanded to the namespaces known to the migration (the Namespace objects given, or the cluster's) that match: [{}]. A namespace created later that matches is not selected",
                    selected.join(", ")
                ),
            );
            rule.namespaces = selected;
        }
    }
    if !never.is_empty() {
        fields.changed(
            at,
            None,
            format!(
                "never matched in logging-operator ({}): left out so routing stays the same",
                never.join("; ")
            ),
        );
        return None;
    }
    for (field, target) in converted {
        fields.converted(&field, target);
    }
    Some(rule)
}

fn flow_rule(rule: Rule) -> FlowMatch {
    let selector = FlowSelector {
        labels: rule.labels,
        hosts: rule.hosts,
        container_names: rule.container_names,
    };
    if rule.select {
        FlowMatch {
            select: Some(selector),
            exclude: None,
        }
    } else {
        FlowMatch {
            select: None,
            exclude: Some(selector),
        }
    }
}

/// Most namespaces one ClusterFlow selector lists (its schema's maxItems, api/flow.rs).
const MAX_SELECTOR_NAMESPACES: usize = 256;

/// One rule as ClusterFlow rules: one, or, when it lists more namespaces than a selector
/// may (an expanded `namespaces_regex`), consecutive copies over parts of the list, which
/// decide exactly as the one rule would.
fn cluster_rules(rule: Rule) -> Vec<ClusterFlowMatch> {
    let parts: Vec<Vec<String>> = if rule.namespaces.len() <= MAX_SELECTOR_NAMESPACES {
        vec![rule.namespaces.clone()]
    } else {
        rule.namespaces
            .chunks(MAX_SELECTOR_NAMESPACES)
            .map(<[String]>::to_vec)
            .collect()
    };
    parts
        .into_iter()
        .map(|namespaces| {
            let selector = ClusterFlowSelector {
                namespaces,
                namespace_labels: rule.namespace_labels.clone(),
                labels: rule.labels.clone(),
                hosts: rule.hosts.clone(),
                container_names: rule.container_names.clone(),
            };
            if rule.select {
                ClusterFlowMatch {
                    select: Some(selector),
                    exclude: None,
                }
            } else {
                ClusterFlowMatch {
                    select: None,
                    exclude: Some(selector),
                }
            }
        })
        .collect()
}
