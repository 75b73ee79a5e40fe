//! Filters: the four Sluice has (grep, record_transformer, parser, dedot) and what of
//! logging-operator's others cannot carry.

use std::collections::BTreeMap;

use crate::api::{
    DedotFilter, Filter, GrepFilter, GrepPattern, ParserFilter, ParserFormat,
    RecordTransformerFilter,
};
use crate::render::escape::is_param_key;

use super::fields::{At, Fields};

/// Where a filter list is: it decides what a change of position means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterPlace {
    /// A Flow's, a ClusterFlow's or the default flow's.
    Flow,
    /// The Logging's `globalFilters`: logging-operator runs them before routing, Sluice after.
    Global,
}

/// logging-operator's filters that Sluice does not have, with why it matters.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "stdout",
        "Sluice has no stdout filter (it printed records to the aggregator's log)",
    ),
    (
        "elasticsearch_genid",
        "Sluice has no elasticsearch_genid filter: records get no generated _id, so a retried bulk request can index a record twice",
    ),
    (
        "record_modifier",
        "Sluice has no record_modifier filter; recordTransformer sets and removes keys",
    ),
    ("geoip", "Sluice has no geoip filter"),
    ("useragent", "Sluice has no useragent filter"),
    (
        "concat",
        "Sluice has no concat filter: multi-line records stay split",
    ),
    (
        "detectExceptions",
        "Sluice has no detect_exceptions filter: stack traces stay one record per line",
    ),
    (
        "prometheus",
        "Sluice has no prometheus filter: these metrics are not produced",
    ),
    (
        "throttle",
        "Sluice has no throttle filter: records are not rate-limited per group",
    ),
    (
        "kube_events_timestamp",
        "Sluice has no kube_events_timestamp filter",
    ),
    (
        "raw",
        "Sluice never renders raw fluentd configuration (one tenant's text would run in the shared aggregator)",
    ),
    ("sumologic", "Sluice has no sumologic filter"),
    ("enhanceK8s", "Sluice has no enhance_k8s_metadata filter"),
];

/// The line of a record as logging-operator's agent names it on containerd, and as Sluice's
/// does (docs/dataplane.md, record keys).
const INCUMBENT_LINE_KEY: &str = "message";
const SLUICE_LINE_KEY: &str = "log";

/// A record key of the source: `message` (the line on containerd in logging-operator) is
/// `log` in Sluice, which is reported on `at`.
fn record_key(fields: &mut Fields<'_>, at: &At<'_>, key: String) -> String {
    renamed_key(fields, at, key).0
}

/// [`record_key`], and whether it was renamed.
fn renamed_key(fields: &mut Fields<'_>, at: &At<'_>, key: String) -> (String, bool) {
    let top = key.strip_prefix("$.").unwrap_or(&key);
    if top == INCUMBENT_LINE_KEY {
        fields.changed(
            at,
            None,
            format!("logging-operator's agent puts the line in `{INCUMBENT_LINE_KEY}` (containerd), Sluice's in `{SLUICE_LINE_KEY}`: renamed"),
        );
        return (SLUICE_LINE_KEY.to_owned(), true);
    }
    (key, false)
}

/// Converts a filter list at `list` into Sluice filters at `target` (`spec.filters`).
pub fn convert(
    fields: &mut Fields<'_>,
    list: &At<'_>,
    target: &str,
    place: FilterPlace,
) -> Vec<Filter> {
    let mut filters = Vec::new();
    for item in fields.items(list) {
        for (kind, body) in fields.entries_of(&item) {
            let at = format!("{target}[{}]", filters.len());
            let filter = match kind.as_str() {
                "grep" => grep(fields, &body, &at).map(|grep| Filter {
                    grep: Some(grep),
                    ..empty()
                }),
                "record_transformer" => record_transformer(fields, &body, &at).map(|t| Filter {
                    record_transformer: Some(t),
                    ..empty()
                }),
                "parser" => parser(fields, &body, &at).map(|p| Filter {
                    parser: Some(p),
                    ..empty()
                }),
                "dedot" => dedot(fields, &body, &at, place).map(|d| Filter {
                    dedot: Some(d),
                    ..empty()
                }),
                "tag_normaliser" => {
                    fields.not_needed(&body, "rewrites fluentd tags; Sluice's outputs never use the tag, so there is nothing to normalise");
                    None
                }
                other => {
                    match UNSUPPORTED.iter().find(|(name, _)| *name == other) {
                        Some((_, why)) => fields.lost(&body, *why),
                        None => fields.lost(&body, format!("Sluice has no {other} filter")),
                    }
                    None
                }
            };
            filters.extend(filter);
        }
    }
    filters
}

fn empty() -> Filter {
    Filter {
        grep: None,
        record_transformer: None,
        parser: None,
        dedot: None,
    }
}

fn patterns(fields: &mut Fields<'_>, list: &At<'_>) -> Vec<GrepPattern> {
    let mut out = Vec::new();
    for item in fields.items(list) {
        let key = item.field("key");
        let pattern = item.field("pattern");
        let (Some(key_at), Some(pattern_at)) = (key, pattern) else {
            fields.error(&item, "a grep pattern needs key and pattern");
            continue;
        };
        let (Some(key), Some(pattern)) = (fields.string(&key_at), fields.string(&pattern_at))
        else {
            continue;
        };
        let key = record_key(fields, &key_at, key);
        out.push(GrepPattern { key, pattern });
    }
    out
}

fn grep(fields: &mut Fields<'_>, body: &At<'_>, target: &str) -> Option<GrepFilter> {
    let mut grep = GrepFilter::default();
    if let Some(at) = body.field("regexp") {
        grep.regexp = patterns(fields, &at);
        fields.converted(&at, format!("{target}.grep.regexp"));
    }
    if let Some(at) = body.field("exclude") {
        grep.exclude = patterns(fields, &at);
        fields.converted(&at, format!("{target}.grep.exclude"));
    }
    // An <and> of regexps is what plain regexps are (all must match), an <or> of excludes
    // what plain excludes are (any drops); a section of one pattern is that pattern.
    for (section, all_regexps) in [("and", true), ("or", false)] {
        let Some(at) = body.field(section) else {
            continue;
        };
        for item in fields.items(&at) {
            let regexps = item
                .field("regexp")
                .map(|a| patterns(fields, &a))
                .unwrap_or_default();
            let excludes = item
                .field("exclude")
                .map(|a| patterns(fields, &a))
                .unwrap_or_default();
            let single = regexps.len() + excludes.len() == 1;
            if single
                || (all_regexps && excludes.is_empty())
                || (!all_regexps && regexps.is_empty())
            {
                fields.converted_note(
                    &item,
                    format!("{target}.grep"),
                    format!("an <{section}> section like this is plain regexp/exclude patterns"),
                );
                grep.regexp.extend(regexps);
                grep.exclude.extend(excludes);
            } else {
                let why = if all_regexps {
                    "Sluice's grep has no <and> of excludes (drop only when all match)"
                } else {
                    "Sluice's grep has no <or> of regexps (keep when any matches)"
                };
                fields.lost(&item, why);
            }
        }
    }
    (!grep.regexp.is_empty() || !grep.exclude.is_empty()).then_some(grep)
}

/// Placeholders that name the fluentd tag, which is not the same in Sluice.
fn names_tag(value: &str) -> bool {
    value.contains("${tag")
}

fn record_transformer(
    fields: &mut Fields<'_>,
    body: &At<'_>,
    target: &str,
) -> Option<RecordTransformerFilter> {
    let mut transformer = RecordTransformerFilter::default();
    let ruby = body.field("enable_ruby").and_then(|at| {
        let enabled = fields.bool(&at);
        fields.not_needed(
            &at,
            "Sluice never evaluates Ruby: values are written as they are (see each record value)",
        );
        enabled
    }) == Some(true);
    if let Some(list) = body.field("records") {
        let mut records: BTreeMap<String, String> = BTreeMap::new();
        for item in fields.items(&list) {
            for (key, value_at) in fields.entries_of(&item) {
                let Some(value) = fields.string(&value_at) else {
                    continue;
                };
                let to = format!("{target}.recordTransformer.records.{key}");
                if !is_param_key(&key) {
                    fields.lost(
                        &value_at,
                        "Sluice's recordTransformer sets plain keys only (letters, digits and '_')",
                    );
                } else if ruby && value.contains("${") {
                    fields.lost(&value_at, "a Ruby expression (enable_ruby): Sluice never evaluates code in the aggregator");
                } else if names_tag(&value) {
                    records.insert(key, value);
                    fields.changed(&value_at, Some(to), "names the fluentd tag, which is sluice.<route> in Sluice's aggregator, not the kubernetes.* tag of logging-operator");
                } else {
                    records.insert(key, value);
                    fields.converted(&value_at, to);
                }
            }
        }
        transformer.records = records;
    }
    if let Some(at) = body.field("remove_keys")
        && let Some(text) = fields.string(&at)
    {
        transformer.remove_keys = text
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        let keys: Vec<String> = std::mem::take(&mut transformer.remove_keys)
            .into_iter()
            .map(|k| record_key(fields, &at, k))
            .collect();
        transformer.remove_keys = keys;
        fields.converted(&at, format!("{target}.recordTransformer.removeKeys"));
    }
    (!transformer.records.is_empty() || !transformer.remove_keys.is_empty()).then_some(transformer)
}

fn parser(fields: &mut Fields<'_>, body: &At<'_>, target: &str) -> Option<ParserFilter> {
    if let Some(at) = body.field("parsers") {
        fields.lost(&at, "Sluice's parser takes one format");
    }
    let Some(parse) = body.field("parse") else {
        fields.lost(body, "a parser without `parse` (or with several `parsers`): Sluice's parser needs one json or regexp format");
        return None;
    };
    let format = match parse
        .field("type")
        .and_then(|at| fields.string(&at).map(|t| (at, t)))
    {
        Some((at, kind)) if kind == "json" => {
            fields.converted(&at, format!("{target}.parser.format json"));
            ParserFormat::Json
        }
        Some((at, kind)) if kind == "regexp" => {
            fields.converted(&at, format!("{target}.parser.format regexp"));
            ParserFormat::Regexp
        }
        Some((at, kind)) => {
            fields.lost(
                &at,
                format!("Sluice's parser reads json or regexp, not {kind}"),
            );
            fields.lost(
                body,
                "the parser is left out: its format is not one Sluice has",
            );
            return None;
        }
        None => {
            fields.lost(
                &parse,
                "no parse type: Sluice's parser needs json or regexp",
            );
            return None;
        }
    };
    let expression = parse.field("expression").and_then(|at| {
        let expression = fields.string(&at);
        fields.converted(&at, format!("{target}.parser.expression"));
        expression
    });
    if format == ParserFormat::Regexp && expression.is_none() {
        fields.lost(&parse, "a regexp parser without an expression");
        return None;
    }
    let key_name = match body.field("key_name") {
        Some(at) => {
            let key = fields.string(&at).unwrap_or_default();
            let (key, renamed) = renamed_key(fields, &at, key);
            if !renamed {
                fields.converted(&at, format!("{target}.parser.keyName"));
            }
            key
        }
        None => {
            fields.changed(body, Some(format!("{target}.parser.keyName {SLUICE_LINE_KEY}")), format!("no key_name: logging-operator parses `{INCUMBENT_LINE_KEY}` (containerd); Sluice's line is `{SLUICE_LINE_KEY}`"));
            SLUICE_LINE_KEY.to_owned()
        }
    };
    let reserve_data =
        fields.carry_bool(body, "reserve_data", format!("{target}.parser.reserveData"));
    let remove_key_name_field = fields.carry_bool(
        body,
        "remove_key_name_field",
        format!("{target}.parser.removeKeyNameField"),
    );
    Some(ParserFilter {
        key_name,
        format,
        expression,
        reserve_data,
        remove_key_name_field,
    })
}

fn dedot(
    fields: &mut Fields<'_>,
    body: &At<'_>,
    target: &str,
    place: FilterPlace,
) -> Option<DedotFilter> {
    let mut filter = DedotFilter::default();
    if let Some(at) = body.field("de_dot_separator") {
        let separator = fields.string(&at).unwrap_or_default();
        let valid = !separator.is_empty()
            && separator.len() <= 4
            && separator
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if valid {
            fields.converted(&at, format!("{target}.dedot.separator"));
            filter.separator = Some(separator);
        } else {
            fields.lost(
                &at,
                "Sluice's separator is 1 to 4 letters, digits, '_' or '-': the default '_' is used",
            );
        }
    }
    let nested = body.field("de_dot_nested").and_then(|at| {
        let nested = fields.bool(&at);
        if nested == Some(true) {
            fields.converted(&at, format!("{target}.dedot"));
        }
        nested
    }) == Some(true);
    if !nested {
        fields.changed(body, Some(format!("{target}.dedot")), "Sluice's dedot also rewrites nested keys (pod labels and annotations); logging-operator's only top-level keys unless de_dot_nested");
    } else if place == FilterPlace::Global {
        fields.changed(body, Some(format!("{target}.dedot")), "logging-operator runs global filters before routing, so its router saw the rewritten label keys; Sluice routes on the labels as the pod has them (the routing check lists any record this changes)");
    }
    Some(filter)
}
