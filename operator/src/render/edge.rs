//! Routing at the edge: the fluent-bit Lua filter that applies the routing contract on the
//! agent, and the routing table it reads. The Lua code (`edge.lua`) is fixed; the table is
//! data generated from the same [`routing`](crate::routing) types `sluice explain` evaluates,
//! mounted from its own Secret and re-read by the filter when it changes (docs/routing.md).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::layout;
use crate::model::Pipeline;
use crate::routing::{Action, Candidates, FlowMatcher, Selector, Watched};

use super::ConfigFile;
use super::fluentd::flow_label;

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
/// First line of the table file, followed by the revision.
const REVISION_PREFIX: &str = "-- sluice-routes ";

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
    out.push('"');
    for byte in text.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\' {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "\\{byte:03}");
        }
    }
    out.push('"');
    out
}

/// The filter's Lua code, reading its table from `routes_file`.
pub fn filter_script(routes_file: &str) -> String {
    LUA_TEMPLATE
        .replace("\"@ROUTES_FILE@\"", &lua_string(routes_file))
        .replace("\"@ROUTE_KEY@\"", &lua_string(ROUTE_KEY))
}

/// The agent's script file, under its content-addressed name in the shared directory of the
/// config bundle (the agent's config names it by absolute path).
pub fn agent_script() -> ConfigFile {
    let content = filter_script(&format!(
        "{}/{}",
        layout::AGENT_ROUTES_DIR,
        layout::AGENT_ROUTES_FILE
    ));
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

/// One field of a rule: its kind, the number of values that follow, the values (maps as
/// key, value, key, value ...).
fn push_field(tokens: &mut Vec<String>, kind: u8, values: Vec<&String>) {
    if values.is_empty() {
        return;
    }
    tokens.push(kind.to_string());
    tokens.push(values.len().to_string());
    tokens.extend(values.into_iter().map(|value| lua_string(value)));
}

/// A flow list (the ClusterFlows, or one namespace's Flows) as ONE flat Lua array, one flow
/// per line. Every table in the routing table is an object LuaJIT's collector marks and
/// sweeps on every cycle (benches/README.md), so a flow costs a few array slots, not a table
/// per flow, rule and label map. A flow is `route, takes-unmatched, end`, then its rules in
/// order, each `select, end, fields...`; an `end` is the 1-based index just past the flow or
/// rule, so the filter skips the rest of a flow once a rule decided.
fn write_flows<'a>(out: &mut String, flows: impl Iterator<Item = (String, &'a FlowMatcher)>) {
    let mut tokens: Vec<String> = Vec::new();
    let mut lines = Vec::new();
    for (route, matcher) in flows {
        let start = tokens.len();
        tokens.push(lua_string(&route));
        tokens.push(matcher.takes_unmatched().to_string());
        tokens.push(String::new());
        for rule in &matcher.rules {
            let rule_start = tokens.len();
            tokens.push((rule.action == Action::Select).to_string());
            tokens.push(String::new());
            let s: &Selector = &rule.selector;
            push_field(&mut tokens, FIELD_NAMESPACES, s.namespaces.iter().collect());
            push_field(
                &mut tokens,
                FIELD_CONTAINERS,
                s.container_names.iter().collect(),
            );
            push_field(&mut tokens, FIELD_HOSTS, s.hosts.iter().collect());
            let pairs = |map: &'a BTreeMap<String, String>| {
                map.iter().flat_map(|(k, v)| [k, v]).collect::<Vec<_>>()
            };
            push_field(&mut tokens, FIELD_LABELS, pairs(&s.labels));
            push_field(
                &mut tokens,
                FIELD_NAMESPACE_LABELS,
                pairs(&s.namespace_labels),
            );
            tokens[rule_start + 1] = (tokens.len() + 1).to_string();
        }
        tokens[start + 2] = (tokens.len() + 1).to_string();
        lines.push(start..tokens.len());
    }
    out.push_str("{\n");
    for line in lines {
        out.push_str(&tokens[line].join(","));
        out.push_str(",\n");
    }
    out.push('}');
}

/// The routing table: `w` the watched namespaces (`true` = all), `d` the default flow's
/// route, `c` the ClusterFlows, `n` each namespace's Flows, each list one flat array
/// ([`write_flows`]) (a record is evaluated against
/// `c` and its own namespace's entry only). Its first line carries a revision, the hash of
/// the rest, which is all the filter reads to notice a change.
pub fn routes_table(pipeline: &Pipeline) -> ConfigFile {
    let flows = &pipeline.flows;
    let candidates = Candidates::new(flows.iter().map(|flow| &flow.matcher));
    let route_of = |index: usize| {
        let flow = &flows[index];
        (flow_route(&flow_label(&flow.key)).to_owned(), &flow.matcher)
    };
    let mut body = String::from("return {\n");
    match &pipeline.watched {
        Watched::All => body.push_str("w=true,\n"),
        Watched::Only(namespaces) => {
            body.push_str("w={");
            for namespace in namespaces {
                let _ = write!(body, "[{}]=true,", lua_string(namespace));
            }
            body.push_str("},\n");
        }
    }
    if pipeline.default_flow.is_some() {
        let _ = writeln!(body, "d={},", lua_string(DEFAULT_ROUTE));
    }
    body.push_str("c=");
    write_flows(&mut body, candidates.cluster.iter().map(|&i| route_of(i)));
    body.push_str(",\nn={\n");
    for (namespace, indices) in &candidates.by_namespace {
        // Flows of namespaces the Logging does not watch can never take a record.
        if !pipeline.watched.contains(namespace) {
            continue;
        }
        let _ = write!(body, "[{}]=", lua_string(namespace));
        write_flows(&mut body, indices.iter().map(|&i| route_of(i)));
        body.push_str(",\n");
    }
    body.push_str("},\n}\n");
    let revision = hex::encode(&Sha256::digest(body.as_bytes())[..8]);
    ConfigFile {
        name: layout::AGENT_ROUTES_FILE.to_owned(),
        content: format!("{REVISION_PREFIX}{revision}\n{body}"),
    }
}

/// Every route a pipeline's routing table can emit and its aggregator configuration
/// dispatches: one per flow, and [`DEFAULT_ROUTE`] with a default flow.
pub fn routes(pipeline: &Pipeline) -> BTreeSet<String> {
    let mut routes: BTreeSet<String> = pipeline
        .flows
        .iter()
        .map(|flow| flow_route(&flow_label(&flow.key)).to_owned())
        .collect();
    if pipeline.default_flow.is_some() {
        routes.insert(DEFAULT_ROUTE.to_owned());
    }
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
