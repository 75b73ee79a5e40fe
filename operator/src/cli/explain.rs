//! `sluice explain`: where would a record with this metadata go? Pure: evaluates the
//! routing contract ([`crate::routing`]) over resolved pipelines and describes the result.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::{FlowPlan, Pipeline};
use crate::routing::{self, Decision, Record, Routed};

/// Parses `k=v,k2=v2` (empty input means no labels). Keys must be non-empty and unique.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("label {pair:?} is not of the form key=value"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("label {pair:?} has an empty key"));
        }
        if labels
            .insert(key.to_owned(), value.trim().to_owned())
            .is_some()
        {
            return Err(format!("label {key:?} is given twice"));
        }
    }
    Ok(labels)
}

fn describe(decision: Decision) -> String {
    match decision {
        Decision::OutOfScope => "does not take it: the namespace is outside its scope".into(),
        Decision::SelectedBy(i) => format!("takes it: match[{i}] (select) matched first"),
        Decision::ExcludedBy(i) => {
            format!("does not take it: match[{i}] (exclude) matched first")
        }
        Decision::SelectedByEmptyMatch => "takes it: no match rules, so it takes everything".into(),
        Decision::SelectedByExcludeOnly => {
            "takes it: only exclude rules and none matched (everything except)".into()
        }
        Decision::NoRuleMatched => "does not take it: no match rule matched".into(),
    }
}

fn write_outputs(out: &mut String, flow: &FlowPlan) {
    if flow.outputs.is_empty() {
        let _ = writeln!(out, "      outputs: none (records are discarded)");
    }
    for output in &flow.outputs {
        let _ = writeln!(out, "      -> {output}");
    }
}

fn describe_record(record: &Record) -> String {
    let labels: Vec<String> = record
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut text = format!("namespace {:?}", record.namespace);
    if !labels.is_empty() {
        let _ = write!(text, ", labels {}", labels.join(","));
    }
    if !record.host.is_empty() {
        let _ = write!(text, ", host {:?}", record.host);
    }
    if !record.container.is_empty() {
        let _ = write!(text, ", container {:?}", record.container);
    }
    text
}

/// Which flows of each pipeline take `record`, which rule decided, and which outputs
/// receive it.
pub fn explain(pipelines: &[Pipeline], record: &Record) -> String {
    let mut out = format!("Record: {}\n", describe_record(record));
    if pipelines.is_empty() {
        out.push_str("No valid Logging found: nothing collects this record.\n");
    }
    for pipeline in pipelines {
        let _ = writeln!(out, "\nLogging {}:", pipeline.logging);
        let routed = routing::route(
            pipeline.flows.iter().map(|f| &*f.matcher),
            &pipeline.watched,
            record,
        );
        if routed == Routed::Unwatched {
            let _ = writeln!(
                out,
                "  namespace {:?} is not watched: the agent never reads these logs.",
                record.namespace
            );
            continue;
        }
        for flow in &pipeline.flows {
            let decision = flow.matcher.decide(record);
            let _ = writeln!(out, "  {}: {}", flow.key, describe(decision));
            if decision.takes() {
                write_outputs(&mut out, flow);
            }
        }
        match (&routed, &pipeline.default_flow) {
            (Routed::Flows(takers), _) => {
                let _ = writeln!(
                    out,
                    "  => {} flow(s) take the record, each its own copy; the default flow does not.",
                    takers.len()
                );
            }
            (_, Some(default)) => {
                let _ = writeln!(out, "  => no flow takes the record: the default flow does.");
                write_outputs(&mut out, default);
            }
            (_, None) => {
                let _ = writeln!(
                    out,
                    "  => no flow takes the record and there is no default flow: it is dropped."
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels() {
        let labels = parse_labels("app=web, tier=front").unwrap();
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(labels.get("tier").map(String::as_str), Some("front"));
        assert!(parse_labels("").unwrap().is_empty());
        assert!(parse_labels("app").is_err());
        assert!(parse_labels("=x").is_err());
        assert!(parse_labels("a=1,a=2").is_err());
    }
}
