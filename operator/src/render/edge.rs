//! Routing at the edge: the fluent-bit Lua filter that applies the routing contract on the
//! agent, and the routing table it reads. The Lua code (`edge.lua`) is fixed; the table is
//! data generated from the same [`routing`](crate::routing) types `sluice explain` evaluates,
//! mounted from its own Secret and re-read by the filter when it changes (docs/routing.md).

use std::collections::BTreeMap;
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

/// The agent's script file, placed next to its main config.
pub fn agent_script() -> ConfigFile {
    ConfigFile {
        name: layout::AGENT_ROUTER_SCRIPT.to_owned(),
        content: filter_script(&format!(
            "{}/{}",
            layout::AGENT_ROUTES_DIR,
            layout::AGENT_ROUTES_FILE
        )),
    }
}

fn write_list<'a>(out: &mut String, key: &str, values: impl Iterator<Item = &'a String>) {
    let _ = write!(out, ",{key}={{");
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&lua_string(value));
    }
    out.push('}');
}

fn write_pairs(out: &mut String, key: &str, pairs: &BTreeMap<String, String>) {
    let _ = write!(out, ",{key}={{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "[{}]={}", lua_string(k), lua_string(v));
    }
    out.push('}');
}

fn write_rule(out: &mut String, action: Action, s: &Selector) {
    let _ = write!(out, "{{s={}", action == Action::Select);
    if !s.namespaces.is_empty() {
        write_list(out, "ns", s.namespaces.iter());
    }
    if !s.container_names.is_empty() {
        write_list(out, "c", s.container_names.iter());
    }
    if !s.hosts.is_empty() {
        write_list(out, "h", s.hosts.iter());
    }
    if !s.labels.is_empty() {
        write_pairs(out, "l", &s.labels);
    }
    if !s.namespace_labels.is_empty() {
        write_pairs(out, "nl", &s.namespace_labels);
    }
    out.push('}');
}

/// One flow on one line: `{r=<route>[,e=true],<rules in order>}`, `e` when the flow takes
/// records none of its rules matched. The scope is the table slot the flow sits in.
fn write_flow(out: &mut String, route: &str, matcher: &FlowMatcher) {
    let _ = write!(out, "{{r={}", lua_string(route));
    if matcher.takes_unmatched() {
        out.push_str(",e=true");
    }
    for rule in &matcher.rules {
        out.push(',');
        write_rule(out, rule.action, &rule.selector);
    }
    out.push_str("},\n");
}

/// The routing table: `w` the watched namespaces (`true` = all), `d` the default flow's
/// route, `c` the ClusterFlows, `n` each namespace's Flows (a record is evaluated against
/// `c` and its own namespace's entry only). Its first line carries a revision, the hash of
/// the rest, which is all the filter reads to notice a change.
pub fn routes_table(pipeline: &Pipeline) -> ConfigFile {
    let flows = &pipeline.flows;
    let candidates = Candidates::new(flows.iter().map(|flow| &flow.matcher));
    let route_of = |index: usize| {
        let flow = &flows[index];
        (flow_label(&flow.key), &flow.matcher)
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
    body.push_str("c={\n");
    for &index in &candidates.cluster {
        let (label, matcher) = route_of(index);
        write_flow(&mut body, flow_route(&label), matcher);
    }
    body.push_str("},\nn={\n");
    for (namespace, indices) in &candidates.by_namespace {
        // Flows of namespaces the Logging does not watch can never take a record.
        if !pipeline.watched.contains(namespace) {
            continue;
        }
        let _ = writeln!(body, "[{}]={{", lua_string(namespace));
        for &index in indices {
            let (label, matcher) = route_of(index);
            write_flow(&mut body, flow_route(&label), matcher);
        }
        body.push_str("},\n");
    }
    body.push_str("},\n}\n");
    let revision = hex::encode(&Sha256::digest(body.as_bytes())[..8]);
    ConfigFile {
        name: layout::AGENT_ROUTES_FILE.to_owned(),
        content: format!("{REVISION_PREFIX}{revision}\n{body}"),
    }
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
    fn routes_are_labels_without_the_at_sign() {
        assert_eq!(flow_route("@flow-0123456789ab"), "flow-0123456789ab");
        assert_eq!(route_tag("default"), "sluice.default");
        let pattern = regex::Regex::new(ROUTE_PATTERN).unwrap();
        assert!(pattern.is_match("flow-0123456789ab"));
        assert!(pattern.is_match(DEFAULT_ROUTE));
        assert!(!pattern.is_match("flow-0123456789ab.x"));
    }
}
