//! fluentd `<filter>` directives for the filter kinds of the API. All four plugins ship in
//! the aggregator image (grep, record_transformer and parser are built into fluentd;
//! dedot is fluent-plugin-dedot_filter).

use crate::api::{Filter, ParserFormat};

use super::escape::{comment_text, fluentd_array, is_param_key};
use super::writer::Writer;

/// Writes `<filter **>` blocks for `filters`, in order.
pub fn write_filters(w: &mut Writer, filters: &[Filter]) {
    write_filters_matching(w, "**", filters);
}

/// Writes `<filter pattern>` blocks for `filters`, in order; `pattern` is a fluentd tag
/// pattern Sluice built.
pub fn write_filters_matching(w: &mut Writer, pattern: &str, filters: &[Filter]) {
    for filter in filters {
        write_filter(w, pattern, filter);
    }
}

fn write_filter(w: &mut Writer, pattern: &str, filter: &Filter) {
    if let Some(grep) = &filter.grep {
        w.open("filter", Some(pattern));
        w.param("@type", "grep");
        for pattern in &grep.regexp {
            w.open("regexp", None);
            w.param_str("key", &pattern.key);
            w.param_str("pattern", &pattern.pattern);
            w.close("regexp");
        }
        for pattern in &grep.exclude {
            w.open("exclude", None);
            w.param_str("key", &pattern.key);
            w.param_str("pattern", &pattern.pattern);
            w.close("exclude");
        }
        w.close("filter");
    }
    if let Some(transformer) = &filter.record_transformer {
        w.open("filter", Some(pattern));
        w.param("@type", "record_transformer");
        // `enable_ruby` stays off: values are literal strings, never evaluated.
        w.param("enable_ruby", "false");
        if !transformer.records.is_empty() {
            w.open("record", None);
            for (key, value) in &transformer.records {
                if is_param_key(key) {
                    w.param_str(key, value);
                } else {
                    w.comment(&format!(
                        "skipped record key {:?}: not a plain key",
                        comment_text(key)
                    ));
                }
            }
            w.close("record");
        }
        if !transformer.remove_keys.is_empty() {
            w.param(
                "remove_keys",
                &fluentd_array(transformer.remove_keys.iter()),
            );
        }
        w.close("filter");
    }
    if let Some(parser) = &filter.parser {
        w.open("filter", Some(pattern));
        w.param("@type", "parser");
        w.param_str("key_name", &parser.key_name);
        w.param(
            "reserve_data",
            bool_str(parser.reserve_data.unwrap_or(false)),
        );
        w.param(
            "remove_key_name_field",
            bool_str(parser.remove_key_name_field.unwrap_or(false)),
        );
        w.open("parse", None);
        match parser.format {
            ParserFormat::Json => w.param("@type", "json"),
            ParserFormat::Regexp => {
                w.param("@type", "regexp");
                w.param_str(
                    "expression",
                    parser.expression.as_deref().unwrap_or("(?<message>.*)"),
                );
            }
        }
        w.close("parse");
        w.close("filter");
    }
    if let Some(dedot) = &filter.dedot {
        w.open("filter", Some(pattern));
        w.param("@type", "dedot");
        w.param("de_dot", "true");
        w.param("de_dot_nested", "true");
        w.param_str(
            "de_dot_separator",
            dedot.separator.as_deref().unwrap_or("_"),
        );
        w.close("filter");
    }
}

pub fn bool_str(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}
