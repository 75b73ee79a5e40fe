//! Every record key a filter or output of `examples/` names must be one the rendered agent
//! sends (`render::fluentbit::emitted_record_keys`) or one an earlier filter of the same flow
//! created. A filter on a key that never exists silently matches nothing (grep), or sends
//! every record to the error output (parser).

use std::collections::BTreeSet;
use std::path::PathBuf;

use sluice::api::{Filter, ParserFormat};
use sluice::cli::input;
use sluice::model::{self, FlowPlan, Pipeline};

fn examples() -> Vec<Pipeline> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let loaded = input::load(&[dir]).expect("examples load");
    model::resolve(&loaded.objects.inventory()).pipelines
}

/// The top-level key a fluentd key or record accessor (`$.a.b`, `$['a']`) names.
fn top_level(key: &str) -> String {
    if let Some(rest) = key.strip_prefix("$.") {
        rest.split(['.', '[']).next().unwrap_or_default().to_owned()
    } else if let Some(rest) = key.strip_prefix("$[") {
        rest.trim_start_matches(['\'', '"'])
            .split(['\'', '"'])
            .next()
            .unwrap_or_default()
            .to_owned()
    } else {
        key.to_owned()
    }
}

/// Keys a record can hold; `None` once a filter made them unknowable (a JSON parser).
type Known = Option<BTreeSet<String>>;

fn check(known: &Known, key: &str, what: String, problems: &mut Vec<String>) {
    if let Some(keys) = known
        && !keys.contains(&top_level(key))
    {
        problems.push(format!(
            "{what} names `{key}`, but records only carry {keys:?}"
        ));
    }
}

fn apply(filter: &Filter, known: Known, at: &str, problems: &mut Vec<String>) -> Known {
    if let Some(grep) = &filter.grep {
        for p in grep.regexp.iter().chain(&grep.exclude) {
            check(&known, &p.key, format!("{at} grep"), problems);
        }
    }
    if let Some(transformer) = &filter.record_transformer {
        for key in &transformer.remove_keys {
            check(
                &known,
                key,
                format!("{at} recordTransformer.removeKeys"),
                problems,
            );
        }
        return known.map(|mut keys| {
            for key in &transformer.remove_keys {
                keys.remove(&top_level(key));
            }
            keys.extend(transformer.records.keys().cloned());
            keys
        });
    }
    if let Some(parser) = &filter.parser {
        check(
            &known,
            &parser.key_name,
            format!("{at} parser.keyName"),
            problems,
        );
        return match parser.format {
            ParserFormat::Json => None,
            ParserFormat::Regexp => {
                let names = regex::Regex::new(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>").unwrap();
                let expression = parser.expression.as_deref().unwrap_or_default();
                let mut keys: BTreeSet<String> = names
                    .captures_iter(expression)
                    .map(|c| c[1].to_owned())
                    .collect();
                if parser.reserve_data.unwrap_or(false) {
                    let mut kept = known?;
                    if parser.remove_key_name_field.unwrap_or(false) {
                        kept.remove(&parser.key_name);
                    }
                    keys.extend(kept);
                }
                Some(keys)
            }
        };
    }
    known
}

/// Problems of one flow: its filters (after the Logging's global filters) and its outputs.
fn flow_problems(pipeline: &Pipeline, flow: &FlowPlan) -> Vec<String> {
    let mut problems = Vec::new();
    let mut known: Known = Some(
        sluice::render::fluentbit::emitted_record_keys(pipeline)
            .into_iter()
            .map(str::to_owned)
            .collect(),
    );
    let chain = pipeline
        .spec
        .global_filters
        .iter()
        .chain(flow.filters.iter());
    for (index, filter) in chain.enumerate() {
        let at = format!("{} filter {index}", flow.key);
        known = apply(filter, known, &at, &mut problems);
    }
    for output in &flow.outputs {
        let Some(plan) = pipeline.outputs.get(output) else {
            continue;
        };
        if let Some(loki) = &plan.spec.loki {
            for path in loki.labels.values() {
                let at = format!("{} → {output} loki label", flow.key);
                check(&known, path, at, &mut problems);
            }
        }
    }
    problems
}

fn all_problems(pipelines: &[Pipeline]) -> Vec<String> {
    pipelines
        .iter()
        .flat_map(|p| {
            p.flows
                .iter()
                .chain(&p.default_flow)
                .flat_map(|f| flow_problems(p, f))
        })
        .collect()
}

#[test]
fn example_filters_name_only_keys_the_agent_sends() {
    let pipelines = examples();
    assert!(!pipelines.is_empty());
    let problems = all_problems(&pipelines);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_sees_every_filter_and_output_of_the_examples() {
    let pipelines = examples();
    let filters: usize = pipelines
        .iter()
        .flat_map(|p| p.flows.iter().chain(&p.default_flow))
        .map(|f| f.filters.len())
        .sum();
    assert!(filters >= 4, "examples lost their filters");
    assert!(
        pipelines.iter().flat_map(|p| p.outputs.values()).any(|o| o
            .spec
            .loki
            .as_ref()
            .is_some_and(|l| !l.labels.is_empty())),
        "examples lost their Loki labels"
    );
}

#[test]
fn a_filter_on_a_key_the_agent_never_sends_is_caught() {
    // The examples' old mistake: filtering on `message`, which fluent-bit's docker and cri
    // parsers never write (they write `log`).
    for (key, caught) in [
        ("message", true),
        ("$.message", true),
        ("log", false),
        ("$.kubernetes.labels.app", false),
        ("$.log_processed.level", false),
    ] {
        let mut pipelines = examples();
        let flow = pipelines[0]
            .flows
            .iter_mut()
            .find(|f| f.filters.iter().any(|f| f.grep.is_some()))
            .expect("an example flow greps");
        let grep = std::sync::Arc::make_mut(&mut flow.filters)
            .iter_mut()
            .find_map(|f| f.grep.as_mut())
            .unwrap();
        grep.regexp[0].key = key.to_owned();
        assert_eq!(!all_problems(&pipelines).is_empty(), caught, "{key}");
    }
    // A parser with a JSON format makes later keys unknowable; a regexp parser does not.
    let mut pipelines = examples();
    let flow = pipelines[0]
        .flows
        .iter_mut()
        .find(|f| {
            f.filters.iter().any(|f| f.parser.is_some())
                && f.filters.iter().any(|f| f.record_transformer.is_some())
        })
        .expect("an example flow parses, then transforms");
    let transformer = std::sync::Arc::make_mut(&mut flow.filters)
        .iter_mut()
        .find_map(|f| f.record_transformer.as_mut())
        .unwrap();
    transformer.remove_keys = vec!["card_number".to_owned()];
    assert!(!all_problems(&pipelines).is_empty());
}
