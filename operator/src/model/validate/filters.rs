//! Filters as fluentd 1.17 (the default aggregator image's) configures them
//! (lib/fluent/plugin/filter_grep.rb, filter_parser.rb, parser_regexp.rb,
//! filter_record_transformer.rb): anything their `configure` would raise on is a problem
//! here, so it never reaches the aggregator.

use std::collections::BTreeSet;

use crate::api::{Filter, GrepPattern, ParserFormat};
use crate::model::{Problem, problem};
use crate::render::escape::is_param_key;

use super::{record_accessor, regex};

/// Problems of a filter list at `path` (such as `spec.filters`).
pub fn validate_filters(path: &str, filters: &[Filter]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (index, filter) in filters.iter().enumerate() {
        let at = format!("{path}[{index}]");
        let kinds = [
            filter.grep.is_some(),
            filter.record_transformer.is_some(),
            filter.parser.is_some(),
            filter.dedot.is_some(),
        ];
        if kinds.iter().filter(|set| **set).count() != 1 {
            problems.push(problem(
                "InvalidFilter",
                at.clone(),
                "a filter sets exactly one of grep, recordTransformer, parser or dedot",
            ));
        }
        if let Some(grep) = &filter.grep {
            grep_patterns(&format!("{at}.grep.regexp"), &grep.regexp, &mut problems);
            grep_patterns(&format!("{at}.grep.exclude"), &grep.exclude, &mut problems);
        }
        if let Some(transformer) = &filter.record_transformer {
            for key in transformer.records.keys().filter(|key| !is_param_key(key)) {
                problems.push(problem(
                    "InvalidKey",
                    format!("{at}.recordTransformer.records"),
                    format!("{key:?} is not a plain record key (letters, digits and '_', not starting with a digit)"),
                ));
            }
            for (i, key) in transformer.remove_keys.iter().enumerate() {
                accessor(
                    format!("{at}.recordTransformer.removeKeys[{i}]"),
                    key,
                    &mut problems,
                );
            }
        }
        if let Some(parser) = &filter.parser {
            accessor(
                format!("{at}.parser.keyName"),
                &parser.key_name,
                &mut problems,
            );
            if parser.format == ParserFormat::Regexp {
                let field = format!("{at}.parser.expression");
                match &parser.expression {
                    None => problems.push(problem(
                        "InvalidFilter",
                        field,
                        "format regexp needs an expression",
                    )),
                    Some(expression) => match regex::config_regexp(expression) {
                        Err(reason) => problems.push(invalid_pattern(field, expression, &reason)),
                        // parser_regexp.rb: the captures' names become the record's keys.
                        Ok(compiled) if compiled.capture_names_len() == 0 => {
                            problems.push(problem(
                                "InvalidPattern",
                                field,
                                "fluentd refuses it: No named captures in 'expression' parameter. The regexp must have at least one named capture",
                            ))
                        }
                        Ok(_) => {}
                    },
                }
            }
        }
    }
    problems
}

/// One `<regexp>` or `<exclude>` list of a grep filter at `path`.
fn grep_patterns(path: &str, patterns: &[GrepPattern], problems: &mut Vec<Problem>) {
    let mut keys = BTreeSet::new();
    for (index, pattern) in patterns.iter().enumerate() {
        let at = format!("{path}[{index}]");
        // filter_grep.rb keeps one condition per key string and raises on a second one.
        if !keys.insert(pattern.key.as_str()) {
            problems.push(problem(
                "DuplicateKey",
                format!("{at}.key"),
                format!(
                    "fluentd refuses it: Duplicate key: {} (combine both patterns into one)",
                    pattern.key
                ),
            ));
        }
        accessor(format!("{at}.key"), &pattern.key, problems);
        if let Err(reason) = regex::config_regexp(&pattern.pattern) {
            problems.push(invalid_pattern(
                format!("{at}.pattern"),
                &pattern.pattern,
                &reason,
            ));
        }
    }
}

fn accessor(field: String, key: &str, problems: &mut Vec<Problem>) {
    if let Err(reason) = record_accessor::check(key) {
        problems.push(problem(
            "InvalidKey",
            field,
            format!("{key:?} is not a record accessor fluentd accepts: {reason}"),
        ));
    }
}

fn invalid_pattern(field: String, pattern: &str, reason: &str) -> Problem {
    problem(
        "InvalidPattern",
        field,
        format!("{pattern:?} is not a regular expression Ruby (fluentd) compiles: {reason}"),
    )
}
