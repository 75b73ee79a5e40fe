//! Routing at the edge: the fluent-bit Lua filter that applies the routing contract on the
//! agent, and the routing table it reads. The Lua code (`edge.lua`) is fixed; the table is
//! data generated from the same [`routing`](crate::routing) types `sluice explain` evaluates,
//! split into an index and slots (a flow's slot is its aggregator config slot), each in its
//! own Secret, and re-read by the filter when it changes (docs/routing.md).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::layout;
use crate::model::{ObjectKey, Pipeline};
use crate::routing::{Action, FlowMatcher, Scope, Selector, Watched};

use super::ConfigFile;
use super::fluentd::label_slot;

/// Record key the Lua filter writes the route into and the rewrite_tag filter reads; removed
/// again before the record leaves the node. Top level is safe: parsed application JSON lives
/// under `log_processed`, so an application cannot set it.
pub const ROUTE_KEY: &str = "sluice_route";
/// Route of the default flow.
pub const DEFAULT_ROUTE: &str = "default";
/// Tag prefix of routed records; the aggregator dispatches on `sluice.<route>`.
pub const TAG_PREFIX: &str = "sluice.";
/// Name of the Lua function the filter calls.
pub const LUA_FUNCTION: &str = "sluice_route";
/// The only routes the rewrite_tag rule accepts (flow routes are `flow-` + 12 hex digits).
pub const ROUTE_PATTERN: &str = "^(flow-[0-9a-f]{12}|default)$";
/// First line of the index file, followed by the revision.
const REVISION_PREFIX: &str = "-- sluice-routes ";
/// First line of a slot file, followed by the slot's revision.
const SLOT_REVISION_PREFIX: &str = "-- sluice-routes-slot ";
/// Largest slot file we write: a Secret holds at most 1 MiB (base64 is not counted against
/// it, but its keys are).
pub const ROUTES_SLOT_BUDGET: usize = 900 * 1024;

const LUA_TEMPLATE: &str = include_str!("edge.lua");

/// The route of a flow, from its fluentd label: the label without `@`, which keeps the
/// dispatch tags and buffer paths tied to the same stable hash.
pub fn flow_route(label: &str) -> &str {
    label.trim_start_matches('@')
}

/// The tag a record routed to `route` travels with.
pub fn route_tag(route: &str) -> String {
    format!("{TAG_PREFIX}{route}")
}

/// A Lua string literal of `text`: only printable ASCII other than `"` and `\` stays as is,
/// every other byte is a decimal escape, so nothing can end the literal.
pub fn lua_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_lua_string(&mut out, text);
    out
}

/// Appends [`lua_string`]`(text)` to `out`.
fn push_lua_string(out: &mut String, text: &str) {
    out.push('"');
    for byte in text.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\' {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "\\{byte:03}");
        }
    }
    out.push('"');
}

/// The filter's Lua code, reading its table from the directory `routes_dir`: the index
/// [`layout::AGENT_ROUTES_FILE`] and the slots [`routes_slot_file`].
pub fn filter_script(routes_dir: &str) -> String {
    LUA_TEMPLATE
        .replace("\"@ROUTES_DIR@\"", &lua_string(routes_dir))
        .replace("\"@INDEX_FILE@\"", &lua_string(layout::AGENT_ROUTES_FILE))
        .replace("@SLOTS@", &layout::AGGREGATOR_CONFIG_SLOTS.to_string())
        .replace("\"@ROUTE_KEY@\"", &lua_string(ROUTE_KEY))
}

/// File name of routing slot `slot` (1-based), the name `edge.lua` reads.
pub fn routes_slot_file(slot: usize) -> String {
    format!("slot-{slot:02}.lua")
}

/// The agent's script file, under its content-addressed name in the shared directory of the
/// config bundle (the agent's config names it by absolute path).
pub fn agent_script() -> ConfigFile {
    let content = filter_script(layout::AGENT_ROUTES_DIR);
    ConfigFile {
        name: crate::bundle::content_addressed_name(
            layout::AGENT_ROUTER_SCRIPT,
            content.as_bytes(),
        ),
        content,
    }
}

/// Field kinds of a rule in the flat encoding; `edge.lua` reads the same numbers.
const FIELD_NAMESPACES: u8 = 1;
const FIELD_CONTAINERS: u8 = 2;
const FIELD_HOSTS: u8 = 3;
const FIELD_LABELS: u8 = 4;
const FIELD_NAMESPACE_LABELS: u8 = 5;

/// Array slots of one field of a rule holding `values` values: none when it has none, else
/// its kind, its count and the values.
fn field_slots(values: usize) -> usize {
    if values == 0 { 0 } else { 2 + values }
}

/// Array slots of one rule: `select`, its length, its fields.
fn rule_slots(s: &Selector) -> usize {
    2 + field_slots(s.namespaces.len())
        + field_slots(s.container_names.len())
        + field_slots(s.hosts.len())
        + field_slots(2 * s.labels.len())
        + field_slots(2 * s.namespace_labels.len())
}

/// One field of a rule: its kind, the number of values that follow, the values (maps as
/// key, value, key, value ...), each slot after a comma.
fn push_field<'a>(
    line: &mut String,
    kind: u8,
    count: usize,
    values: impl Iterator<Item = &'a String>,
) {
    if count == 0 {
        return;
    }
    let _ = write!(line, ",{kind},{count}");
    for value in values {
        line.push(',');
        push_lua_string(line, value);
    }
}

/// One flow as a line of a flat Lua array. A flow list (the ClusterFlows, or one namespace's
/// Flows) is ONE array, one flow per line: every table in the routing table is an object
/// LuaJIT's collector marks and sweeps on every cycle (benches/README.md), so a flow costs a
/// few array slots, not a table per flow, rule and label map. A flow is `route,
/// takes-unmatched, length`, then its rules in order, each `select, length, fields...`; a
/// length counts the slots of its flow or rule, so a line means the same wherever it stands
/// and the filter skips the rest of a flow once a rule decided. Written straight into one
/// string, lengths counted first: a line per flow, 10,000 on every reconcile.
fn flow_line(route: &str, matcher: &FlowMatcher) -> String {
    let slots = 3 + matcher
        .rules
        .iter()
        .map(|rule| rule_slots(&rule.selector))
        .sum::<usize>();
    let mut line = String::with_capacity(64);
    push_lua_string(&mut line, route);
    let _ = write!(line, ",{},{slots}", matcher.takes_unmatched());
    for rule in &matcher.rules {
        let s: &Selector = &rule.selector;
        let _ = write!(line, ",{},{}", rule.action == Action::Select, rule_slots(s));
        push_field(
            &mut line,
            FIELD_NAMESPACES,
            s.namespaces.len(),
            s.namespaces.iter(),
        );
        push_field(
            &mut line,
            FIELD_CONTAINERS,
            s.container_names.len(),
            s.container_names.iter(),
        );
        push_field(&mut line, FIELD_HOSTS, s.hosts.len(), s.hosts.iter());
        push_field(
            &mut line,
            FIELD_LABELS,
            2 * s.labels.len(),
            pairs(&s.labels),
        );
        push_field(
            &mut line,
            FIELD_NAMESPACE_LABELS,
            2 * s.namespace_labels.len(),
            pairs(&s.namespace_labels),
        );
    }
    line
}

/// A map's keys and values, alternating.
fn pairs(map: &crate::routing::LabelMap) -> impl Iterator<Item = &String> {
    map.iter().flat_map(|(k, v)| [k, v])
}

/// Flow lines as one flat Lua array.
fn write_list(out: &mut String, lines: &[String]) {
    out.push_str("{\n");
    for line in lines {
        out.push_str(line);
        out.push_str(",\n");
    }
    out.push('}');
}

/// The agent's routing table: an index and [`layout::AGGREGATOR_CONFIG_SLOTS`] slots, each
/// file in a Secret of its own, and the flows left out because their slot is full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRoutes {
    /// `routes.lua`: `w` the watched namespaces (`true` = all), `d` the default flow's route.
    pub index: ConfigFile,
    /// `slot-01.lua` to `slot-32.lua`, in order, empty slots too. Slot `s` holds the flows
    /// whose aggregator config slot is `s` ([`super::fluentd::config_slot`]): `c` their ClusterFlows, `n` their
    /// Flows by namespace, each list one flat array ([`write_flows`]); `l` when a rule
    /// selects on namespace labels. A select-label edit rewrites its flow's slot only.
    pub slots: Vec<ConfigFile>,
    /// Flows left out because their slot would exceed [`ROUTES_SLOT_BUDGET`] (the last by key).
    pub overflowed: Vec<ObjectKey>,
}

impl AgentRoutes {
    /// Every file, index first.
    pub fn files(&self) -> impl Iterator<Item = &ConfigFile> {
        std::iter::once(&self.index).chain(&self.slots)
    }
}

/// Each file's first line carries a revision, a hash of the rest, which is all the filter
/// reads to notice a change.
fn with_revision(prefix: &str, name: String, body: String) -> ConfigFile {
    let revision = hex::encode(&Sha256::digest(body.as_bytes())[..8]);
    ConfigFile {
        name,
        content: format!("{prefix}{revision}\n{body}"),
    }
}

/// The routing table ([`AgentRoutes`]). A record is evaluated against the ClusterFlows of
/// every slot and its own namespace's Flows of every slot.
pub fn routes_table(pipeline: &Pipeline) -> AgentRoutes {
    routes_table_with_budget(pipeline, ROUTES_SLOT_BUDGET)
}

/// [`routes_table`] with an explicit slot budget (tests use small ones).
pub fn routes_table_with_budget(pipeline: &Pipeline, budget: usize) -> AgentRoutes {
    routes_table_emitting(pipeline, &|_| true, budget)
}

/// Which of a pipeline's routes ([`routes`]) the agents' table holds: the others are left out
/// as if their flows did not exist (a flow its full aggregator slot left out, a route not every
/// aggregator pod dispatches yet). A predicate, not a second pipeline without those flows:
/// at 10,000 flows a copy of the pipeline costs megabytes on every reconcile that withholds
/// a route.
pub type Emits<'a> = &'a dyn Fn(&str) -> bool;

/// [`routes_table_with_budget`] holding only the routes `emits` lets through.
pub fn routes_table_emitting(pipeline: &Pipeline, emits: Emits<'_>, budget: usize) -> AgentRoutes {
    let mut index = String::from("return {\n");
    match &pipeline.watched {
        Watched::All => index.push_str("w=true,\n"),
        Watched::Only(namespaces) => {
            index.push_str("w={");
            for namespace in namespaces {
                let _ = write!(index, "[{}]=true,", lua_string(namespace));
            }
            index.push_str("},\n");
        }
    }
    if pipeline.default_flow.is_some() && emits(DEFAULT_ROUTE) {
        let _ = writeln!(index, "d={},", lua_string(DEFAULT_ROUTE));
    }
    index.push_str("}\n");

    // Per slot: the ClusterFlows, then each namespace's Flows, in key order, so which flows a
    // full slot leaves out never depends on the order objects arrived in.
    let mut flows: Vec<_> = pipeline
        .flows
        .iter()
        .filter(|flow| match &flow.matcher.scope {
            Scope::Cluster => true,
            // Flows of namespaces the Logging does not watch can never take a record.
            Scope::Namespace(namespace) => pipeline.watched.contains(namespace),
        })
        .filter(|flow| emits(flow_route(flow.label())))
        .collect();
    flows.sort_by(|a, b| a.key.cmp(&b.key));
    let slots = layout::AGGREGATOR_CONFIG_SLOTS;
    type Lists<'a> = (Vec<String>, BTreeMap<&'a str, Vec<String>>, usize, bool);
    let mut contents: Vec<Lists> = (0..slots)
        .map(|_| (Vec::new(), BTreeMap::new(), 0, false))
        .collect();
    let mut overflowed = Vec::new();
    for flow in flows {
        let Some((cluster, by_namespace, size, namespace_labels)) =
            contents.get_mut(label_slot(flow.label()) - 1)
        else {
            continue;
        };
        let line = flow_line(flow_route(flow.label()), &flow.matcher);
        // The list's own brackets and the namespace key count too.
        let cost = line.len()
            + 2
            + match &flow.matcher.scope {
                Scope::Namespace(namespace) => namespace.len() + 8,
                Scope::Cluster => 0,
            };
        if *size + cost > budget {
            overflowed.push(flow.key.clone());
            continue;
        }
        *size += cost;
        *namespace_labels |= flow
            .matcher
            .rules
            .iter()
            .any(|rule| !rule.selector.namespace_labels.is_empty());
        match &flow.matcher.scope {
            Scope::Cluster => cluster.push(line),
            Scope::Namespace(namespace) => by_namespace
                .entry(namespace.as_str())
                .or_default()
                .push(line),
        }
    }
    let slots = contents
        .into_iter()
        .enumerate()
        .map(|(index, (cluster, by_namespace, _, namespace_labels))| {
            let mut body = String::from("return {\n");
            if namespace_labels {
                body.push_str("l=true,\n");
            }
            body.push_str("c=");
            write_list(&mut body, &cluster);
            body.push_str(",\nn={\n");
            for (namespace, lines) in &by_namespace {
                let _ = write!(body, "[{}]=", lua_string(namespace));
                write_list(&mut body, lines);
                body.push_str(",\n");
            }
            body.push_str("},\n}\n");
            with_revision(SLOT_REVISION_PREFIX, routes_slot_file(index + 1), body)
        })
        .collect();
    AgentRoutes {
        index: with_revision(REVISION_PREFIX, layout::AGENT_ROUTES_FILE.to_owned(), index),
        slots,
        overflowed,
    }
}

/// Every route a pipeline's routing table can emit and its aggregator configuration
/// dispatches: one per flow, and [`DEFAULT_ROUTE`] with a default flow.
pub fn routes(pipeline: &Pipeline) -> BTreeSet<String> {
    let mut routes: BTreeSet<String> = pipeline
        .flows
        .iter()
        .map(|flow| flow_route(flow.label()).to_owned())
        .collect();
    if pipeline.default_flow.is_some() {
        routes.insert(DEFAULT_ROUTE.to_owned());
    }
    routes
}

/// The routes of [`routes`] that `emits` lets through: the agents' route list.
pub fn routes_emitting(pipeline: &Pipeline, emits: Emits<'_>) -> BTreeSet<String> {
    let mut routes = routes(pipeline);
    routes.retain(|route| emits(route));
    routes
}

/// The route list file ([`layout::ROUTES_LIST_FILE`]): one route per line, sorted.
pub fn routes_list(routes: &BTreeSet<String>) -> ConfigFile {
    let mut content = String::with_capacity(routes.len() * 18);
    for route in routes {
        content.push_str(route);
        content.push('\n');
    }
    ConfigFile {
        name: layout::ROUTES_LIST_FILE.to_owned(),
        content,
    }
}

/// The routes of a route list file; lines that are not routes are ignored.
pub fn parse_routes_list(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_strings_cannot_be_ended_early() {
        assert_eq!(lua_string("team-a"), "\"team-a\"");
        assert_eq!(lua_string("a\"b\\c\nd]]"), "\"a\\034b\\092c\\010d]]\"");
        assert_eq!(lua_string("é"), "\"\\195\\169\"");
    }

    #[test]
    fn a_route_list_reads_back_as_written() {
        let routes: BTreeSet<String> = ["flow-0123456789ab", "default"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let file = routes_list(&routes);
        assert_eq!(file.content, "default\nflow-0123456789ab\n");
        assert_eq!(parse_routes_list(&file.content), routes);
        assert!(parse_routes_list("").is_empty());
    }

    #[test]
    fn routes_are_labels_without_the_at_sign() {
        assert_eq!(flow_route("@flow-0123456789ab"), "flow-0123456789ab");
        assert_eq!(route_tag("default"), "sluice.default");
        let pattern = regex::Regex::new(ROUTE_PATTERN).unwrap();
        assert!(pattern.is_match("flow-0123456789ab"));
        assert!(pattern.is_match(DEFAULT_ROUTE));
        assert!(!pattern.is_match("flow-0123456789ab.x"));
    }
}
