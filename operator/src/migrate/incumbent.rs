//! logging-operator's routing, encoded on its own from the source objects: the check that the
//! converted objects route the same way compares against this, never against the converter.
//!
//! Facts (logging-operator 6.x `pkg/resources/model/system.go`, fluent-plugin-label-router
//! 0.5 `out_label_router.rb`): every Flow and ClusterFlow is one route, its `match` entries
//! tried in order; the first whose every set field matches decides (`select` takes,
//! `exclude` turns away); no entry matching means not taken, so a flow of excludes only, or
//! with an empty `match` list, takes nothing. A Flow's entries are limited to its namespace,
//! and its excludes ignore `namespace_labels`. No `match` at all (or the deprecated
//! `selectors`) is one select of the selector's labels: the whole namespace for a Flow, every
//! namespace for a ClusterFlow. A flow with both `match` and `selectors`, or an entry with
//! both `select` and `exclude`, is rejected. Every route that matches gets a copy; the
//! default flow gets what no route matched. Global filters run before the router.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::validate::regex;
use crate::routing::{Record, Watched};

use super::Domain;
use super::report::Destination;
use super::source::{SourceKind, SourceObject, string_list, string_map};
use super::yaml::{Node, Value};

/// One `<match>` of a label_router route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Match {
    pub labels: BTreeMap<String, String>,
    pub namespace_labels: BTreeMap<String, String>,
    pub namespaces: Vec<String>,
    pub namespaces_regex: Vec<String>,
    pub hosts: Vec<String>,
    pub container_names: Vec<String>,
    pub negate: bool,
}

/// One route: a flow, its matches and the outputs it sends to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub flow: String,
    pub matches: Vec<Match>,
    pub outputs: BTreeSet<String>,
}

/// The router of one logging-operator Logging.
#[derive(Clone, Debug, PartialEq)]
pub struct Router {
    /// ClusterFlows' routes: any namespace.
    pub routes: Vec<Route>,
    /// Flows' routes by namespace: every match of a Flow names its own namespace, so it
    /// can take no other namespace's record.
    pub namespace_routes: BTreeMap<String, Vec<Route>>,
    pub default: Option<Route>,
    /// Namespaces whose logs reach the aggregator at all.
    pub collects: Watched,
    pub attaches_labels: bool,
    pub attaches_namespace_labels: bool,
    /// A global nested dedot's separator: the router sees label keys with it for dots.
    pub label_dedot: Option<String>,
}

impl Match {
    /// `filter_select` of the label router.
    fn selects(
        &self,
        labels: &BTreeMap<String, String>,
        namespace_labels: &BTreeMap<String, String>,
        record: &Record,
    ) -> bool {
        if !self.hosts.is_empty() && !self.hosts.contains(&record.host) {
            return false;
        }
        if !self.container_names.is_empty() && !self.container_names.contains(&record.container) {
            return false;
        }
        if !self.namespaces.is_empty() && !self.namespaces.contains(&record.namespace) {
            return false;
        }
        if !self.namespaces_regex.is_empty()
            && !self.namespaces_regex.iter().any(|pattern| {
                regex::ruby_regexp(pattern, onig::RegexOptions::REGEX_OPTION_NONE)
                    .is_ok_and(|compiled| regex::matches(&compiled, &record.namespace))
            })
        {
            return false;
        }
        if !self.namespace_labels.is_empty() && !contains(namespace_labels, &self.namespace_labels)
        {
            return false;
        }
        contains(labels, &self.labels)
    }
}

/// `(match.to_a - input.to_a).empty?`
fn contains(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

impl Route {
    /// `Route#match?`: the first matching entry decides; none matching is false.
    fn matches(
        &self,
        labels: &BTreeMap<String, String>,
        namespace_labels: &BTreeMap<String, String>,
        record: &Record,
    ) -> bool {
        for m in &self.matches {
            if m.selects(labels, namespace_labels, record) {
                return !m.negate;
            }
        }
        false
    }
}

impl Router {
    /// Where logging-operator sends `record`.
    pub fn destination(&self, record: &Record) -> Destination {
        let mut destination = Destination::default();
        if !self.collects.contains(&record.namespace) {
            return destination;
        }
        let labels: BTreeMap<String, String> = if !self.attaches_labels {
            BTreeMap::new()
        } else if let Some(separator) = &self.label_dedot {
            record
                .labels
                .iter()
                .map(|(k, v)| (k.replace('.', separator), v.clone()))
                .collect()
        } else {
            record.labels.clone()
        };
        let namespace_labels = if self.attaches_namespace_labels {
            record.namespace_labels.clone()
        } else {
            BTreeMap::new()
        };
        let local = self
            .namespace_routes
            .get(&record.namespace)
            .into_iter()
            .flatten();
        for route in self.routes.iter().chain(local) {
            if route.matches(&labels, &namespace_labels, record) {
                destination
                    .0
                    .insert(route.flow.clone(), route.outputs.clone());
            }
        }
        if destination.0.is_empty()
            && let Some(default) = &self.default
        {
            destination
                .0
                .insert(default.flow.clone(), default.outputs.clone());
        }
        destination
    }
}

/// The label of the default flow of a Logging in destinations.
pub fn default_flow_label(logging: &str) -> String {
    format!("Logging {logging} (defaultFlow)")
}

fn strings(node: &Node, key: &str) -> Vec<String> {
    node.get(key).and_then(string_list).unwrap_or_default()
}

fn map(node: &Node, key: &str) -> BTreeMap<String, String> {
    node.get(key).and_then(string_map).unwrap_or_default()
}

fn present<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    node.get(key).filter(|n| !n.is_null())
}

/// The route of a Flow or ClusterFlow; `None` when logging-operator rejects the flow.
fn route(flow: &SourceObject, domain: &Domain<'_>) -> Option<Route> {
    let spec = &flow.spec;
    let cluster = flow.id.kind == SourceKind::ClusterFlow;
    let own_namespace = flow.id.namespace.clone().unwrap_or_default();
    let matches = match (present(spec, "match"), present(spec, "selectors")) {
        (Some(_), Some(_)) => return None,
        (Some(list), None) => {
            let Value::Seq(entries) = &list.value else {
                return None;
            };
            let mut matches = Vec::new();
            for entry in entries {
                let (body, negate) = match (present(entry, "select"), present(entry, "exclude")) {
                    (Some(_), Some(_)) => return None,
                    (Some(body), None) => (body, false),
                    (None, Some(body)) => (body, true),
                    (None, None) => continue,
                };
                matches.push(if cluster {
                    Match {
                        labels: map(body, "labels"),
                        namespace_labels: map(body, "namespace_labels"),
                        namespaces: strings(body, "namespaces"),
                        namespaces_regex: strings(body, "namespaces_regex"),
                        hosts: strings(body, "hosts"),
                        container_names: strings(body, "container_names"),
                        negate,
                    }
                } else {
                    Match {
                        labels: map(body, "labels"),
                        hosts: strings(body, "hosts"),
                        container_names: strings(body, "container_names"),
                        namespaces: vec![own_namespace.clone()],
                        negate,
                        ..Match::default()
                    }
                });
            }
            matches
        }
        (None, selectors) => vec![Match {
            labels: selectors.and_then(string_map).unwrap_or_default(),
            namespaces: if cluster {
                Vec::new()
            } else {
                vec![own_namespace.clone()]
            },
            ..Match::default()
        }],
    };
    let mut outputs = BTreeSet::new();
    for name in strings(spec, "globalOutputRefs") {
        if let Some(output) = domain.cluster_output(&name) {
            let protected = output
                .spec
                .get("protected")
                .and_then(Node::scalar_text)
                .as_deref()
                == Some("true");
            if cluster || !protected {
                outputs.insert(output.id.to_string());
            }
        }
    }
    if !cluster {
        for name in strings(spec, "localOutputRefs") {
            if let Some(output) = domain.output(&own_namespace, &name) {
                outputs.insert(output.id.to_string());
            }
        }
    }
    Some(Route {
        flow: flow.id.to_string(),
        matches,
        outputs,
    })
}

/// logging-operator's router for a domain.
pub fn router(domain: &Domain<'_>) -> Router {
    let routes = domain
        .cluster_flows
        .iter()
        .filter_map(|flow| route(flow, domain))
        .collect();
    let mut namespace_routes: BTreeMap<String, Vec<Route>> = BTreeMap::new();
    for flow in &domain.flows {
        if let Some(route) = route(flow, domain) {
            let namespace = flow.id.namespace.clone().unwrap_or_default();
            namespace_routes.entry(namespace).or_default().push(route);
        }
    }
    let default = domain.logging.and_then(|logging| {
        let default_flow = present(&logging.spec, "defaultFlow")?;
        let outputs = strings(default_flow, "globalOutputRefs")
            .iter()
            .filter_map(|name| domain.cluster_output(name))
            .map(|o| o.id.to_string())
            .collect();
        Some(Route {
            flow: default_flow_label(&logging.id.name),
            matches: Vec::new(),
            outputs,
        })
    });
    Router {
        routes,
        namespace_routes,
        default,
        collects: domain.collects.clone(),
        attaches_labels: domain.attaches_labels(),
        attaches_namespace_labels: domain.attaches_namespace_labels(),
        label_dedot: domain.global_label_dedot(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(namespace: &str, labels: &[(&str, &str)], container: &str) -> Record {
        Record {
            namespace: namespace.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            container: container.into(),
            ..Record::default()
        }
    }

    fn route(matches: Vec<Match>) -> Route {
        Route {
            flow: "f".into(),
            matches,
            outputs: BTreeSet::new(),
        }
    }

    fn router(routes: Vec<Route>, default: bool) -> Router {
        Router {
            routes,
            namespace_routes: BTreeMap::new(),
            default: default.then(|| route(Vec::new())).map(|mut r| {
                r.flow = "default".into();
                r
            }),
            collects: Watched::All,
            attaches_labels: true,
            attaches_namespace_labels: true,
            label_dedot: None,
        }
    }

    fn takers(router: &Router, record: &Record) -> Vec<String> {
        router.destination(record).0.into_keys().collect()
    }

    #[test]
    fn exclude_only_routes_take_nothing() {
        let exclude = Match {
            container_names: vec!["istio-proxy".into()],
            negate: true,
            ..Match::default()
        };
        let r = router(vec![route(vec![exclude])], true);
        assert_eq!(takers(&r, &record("a", &[], "web")), vec!["default"]);
        assert_eq!(
            takers(&r, &record("a", &[], "istio-proxy")),
            vec!["default"]
        );
    }

    #[test]
    fn first_match_decides_and_routes_fan_out() {
        let exclude = Match {
            container_names: vec!["istio-proxy".into()],
            negate: true,
            ..Match::default()
        };
        let select = Match {
            labels: BTreeMap::from([("app".into(), "web".into())]),
            ..Match::default()
        };
        let mut second = route(vec![Match::default()]);
        second.flow = "all".into();
        let r = router(vec![route(vec![exclude, select]), second], false);
        assert_eq!(
            takers(&r, &record("a", &[("app", "web")], "web")),
            vec!["all", "f"]
        );
        assert_eq!(
            takers(&r, &record("a", &[("app", "web")], "istio-proxy")),
            vec!["all"]
        );
    }

    #[test]
    fn namespaces_regex_is_unanchored_ruby() {
        let select = Match {
            namespaces_regex: vec!["^team-(a|b)".into()],
            ..Match::default()
        };
        let r = router(vec![route(vec![select])], false);
        assert_eq!(takers(&r, &record("team-b-dev", &[], "x")), vec!["f"]);
        assert!(takers(&r, &record("ops", &[], "x")).is_empty());
    }

    #[test]
    fn a_global_nested_dedot_hides_dotted_label_keys_from_the_router() {
        let select = Match {
            labels: BTreeMap::from([("app.kubernetes.io/name".into(), "web".into())]),
            ..Match::default()
        };
        let mut r = router(vec![route(vec![select])], false);
        let web = record("a", &[("app.kubernetes.io/name", "web")], "x");
        assert_eq!(takers(&r, &web), vec!["f"]);
        r.label_dedot = Some("_".into());
        assert!(takers(&r, &web).is_empty());
    }
}
