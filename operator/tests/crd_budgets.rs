//! The generated CRDs must be accepted by every supported API server (1.28 and newer), which
//! checks them in ways the `cel` evaluator in tests/crds.rs does not:
//!
//! - k8s.io/apiextensions-apiserver `pkg/apis/apiextensions/validation` estimates each rule's
//!   cost (cel-go's static estimator over the schema's declared sizes), multiplies it by the
//!   largest number of times the rule can run (the product of `maxItems`/`maxProperties` of the
//!   lists and maps around it; without them, 3 MiB divided by the element's smallest encoding),
//!   and rejects a rule above `StaticEstimatedCostLimit` and a CRD whose rules add up to more
//!   than `StaticEstimatedCRDCostLimit`. At runtime one evaluation may spend `PerCallLimit`.
//! - Until 1.29 (k8s.io/apiserver commit "allow empty object to be CEL value") a rule that
//!   touches an object declared with neither `properties` nor `additionalProperties`, even
//!   through `has()`, fails at admission with "invalid object type".
//!
//! We cannot run cel-go here, so every rule is held to an upper bound of its cost that only
//! grows with the same inputs the real estimator uses, and every size it depends on must be
//! declared: a bound that is missing is a failure, never a guess.

use serde_json::Value;

/// `StaticEstimatedCostLimit` in apiextensions validation.go: one rule times its cardinality.
const STATIC_ESTIMATED_COST_LIMIT: u64 = 10_000_000;
/// `StaticEstimatedCRDCostLimit` in apiextensions validation.go: all rules of one CRD.
const STATIC_ESTIMATED_CRD_COST_LIMIT: u64 = 100_000_000;
/// `PerCallLimit` in k8s.io/apiserver `pkg/apis/cel/config.go`: one evaluation of one rule.
const PER_CALL_LIMIT: u64 = 1_000_000;
/// cel-go's `ListCreateBaseCost`/`MapCreateBaseCost`: the dearest constant-cost step.
const BASE_STEP_COST: u64 = 10;
/// The longest map key the data can hold (a label key: 253-byte prefix, `/`, 63-byte name).
const MAP_KEY_BOUND: u64 = 317;

#[derive(Debug)]
struct Rule {
    crd: String,
    path: String,
    rule: String,
    /// How many times the rule can run per object; `None` if a list or map around it is unbounded.
    cardinality: Option<u64>,
    node: Value,
}

fn crd_schemas() -> Vec<(String, Value)> {
    sluice::api::crds()
        .iter()
        .map(|crd| {
            let value = serde_json::to_value(crd).unwrap();
            let name = value["metadata"]["name"].as_str().unwrap().to_owned();
            let schema = value["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
            (name, schema)
        })
        .collect()
}

fn is_map(node: &Value) -> bool {
    node.get("additionalProperties")
        .is_some_and(Value::is_object)
}

fn is_empty_object(node: &Value) -> bool {
    node["type"] == "object"
        && node
            .get("properties")
            .is_none_or(|p| p.as_object().is_none_or(|p| p.is_empty()))
        && !is_map(node)
}

/// Every rule with where it sits and how often it can run.
fn rules() -> Vec<Rule> {
    fn walk(crd: &str, node: &Value, path: &str, cardinality: Option<u64>, out: &mut Vec<Rule>) {
        for rule in node["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            out.push(Rule {
                crd: crd.to_owned(),
                path: path.to_owned(),
                rule: rule["rule"].as_str().unwrap().to_owned(),
                cardinality,
                node: node.clone(),
            });
        }
        if let Some(props) = node["properties"].as_object() {
            for (name, child) in props {
                walk(crd, child, &format!("{path}.{name}"), cardinality, out);
            }
        }
        let times = |bound: &str| -> Option<u64> {
            Some(cardinality?.saturating_mul(node[bound].as_u64()?))
        };
        if let Some(items) = node.get("items") {
            walk(crd, items, &format!("{path}[*]"), times("maxItems"), out);
        }
        if is_map(node) {
            let values = &node["additionalProperties"];
            walk(
                crd,
                values,
                &format!("{path}{{*}}"),
                times("maxProperties"),
                out,
            );
        }
    }
    let mut out = Vec::new();
    for (crd, schema) in crd_schemas() {
        walk(&crd, &schema, "", Some(1), &mut out);
    }
    out
}

/// Lists, maps and strings under `node` (itself included) that declare no size bound.
fn unbounded_descendants(node: &Value, path: &str, out: &mut Vec<String>) {
    match node["type"].as_str() {
        Some("string") if node.get("maxLength").is_none() && node.get("enum").is_none() => {
            out.push(format!("{path} (string without maxLength)"));
        }
        Some("array") => {
            if node.get("maxItems").is_none() {
                out.push(format!("{path} (list without maxItems)"));
            }
            unbounded_descendants(&node["items"], &format!("{path}[*]"), out);
        }
        Some("object") if is_map(node) => {
            if node.get("maxProperties").is_none() {
                out.push(format!("{path} (map without maxProperties)"));
            }
            unbounded_descendants(&node["additionalProperties"], &format!("{path}{{*}}"), out);
        }
        Some("object") => {
            if node["x-kubernetes-preserve-unknown-fields"] == true && is_empty_object(node) {
                out.push(format!("{path} (object of unknown size)"));
            }
            for (name, child) in node["properties"].as_object().into_iter().flatten() {
                unbounded_descendants(child, &format!("{path}.{name}"), out);
            }
        }
        _ => {}
    }
}

/// Largest encoded size of data matching `node`, as the estimator sizes strings and lists;
/// `None` when some part is unbounded.
fn size_bound(node: &Value) -> Option<u64> {
    if node["x-kubernetes-int-or-string"] == true {
        return node["maxLength"].as_u64().or(Some(20));
    }
    match node["type"].as_str()? {
        "string" => node["maxLength"].as_u64().or_else(|| {
            node["enum"].as_array().map(|e| {
                e.iter()
                    .filter_map(Value::as_str)
                    .map(|s| s.len() as u64)
                    .max()
                    .unwrap_or(0)
            })
        }),
        "integer" | "number" | "boolean" => Some(20),
        "array" => Some(
            node["maxItems"]
                .as_u64()?
                .saturating_mul(size_bound(&node["items"])? + 1),
        ),
        "object" if is_map(node) => Some(
            node["maxProperties"]
                .as_u64()?
                .saturating_mul(size_bound(&node["additionalProperties"])? + MAP_KEY_BOUND + 4),
        ),
        "object" => {
            if node["x-kubernetes-preserve-unknown-fields"] == true && is_empty_object(node) {
                return None;
            }
            let mut total = 2u64;
            for (name, child) in node["properties"].as_object().into_iter().flatten() {
                total = total.saturating_add(name.len() as u64 + 4 + size_bound(child)?);
            }
            Some(total)
        }
        _ => None,
    }
}

/// CEL tokens of a rule: identifiers, literals, operators and punctuation.
fn tokens(rule: &str) -> Vec<&str> {
    let re = regex::Regex::new(
        r#"[A-Za-z_][A-Za-z0-9_]*|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[0-9]+(?:\.[0-9]+)?|==|!=|<=|>=|&&|\|\||\S"#,
    )
    .unwrap();
    re.find_iter(rule).map(|m| m.as_str()).collect()
}

/// The schema node a `self.a.b` path names, relative to the rule's node.
fn resolve<'a>(node: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = node;
    for field in path.split('.').skip(1) {
        current = current["properties"].get(field)?;
    }
    Some(current)
}

/// `self`/`oldSelf` paths in a rule, each with whether it sits directly inside `has(...)`.
fn paths(rule: &str) -> Vec<(String, bool)> {
    let re =
        regex::Regex::new(r"(has\(\s*)?\b(self|oldSelf)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)").unwrap();
    re.captures_iter(rule)
        .map(|c| (format!("self{}", &c[3]), c.get(1).is_some()))
        .collect()
}

/// Upper bound of cel-go's estimated cost of one evaluation of `rule` on `node`.
///
/// Each token is at most one step of the evaluation; a step costs at most the base cost of
/// building a list or map plus one unit per element or byte of the largest value the rule reads
/// (comparisons and `size()` are linear in the value, and cheaper). A comprehension macro
/// (`all`, `exists`, `exists_one`, `filter`, `map`) repeats its body once per element of its
/// range: a list literal's elements or the declared `maxItems`/`maxProperties` of a field.
fn cost_bound(rule: &Rule) -> Result<u64, String> {
    let mut largest_value = 0u64;
    for (path, in_has) in paths(&rule.rule) {
        let target = resolve(&rule.node, &path)
            .ok_or_else(|| format!("{path} names no field of the schema"))?;
        if !in_has {
            let size = size_bound(target).ok_or_else(|| format!("{path} has no size bound"))?;
            largest_value = largest_value.max(size);
        }
    }
    let macro_re = regex::Regex::new(r"\.(all|exists_one|exists|filter|map)\(").unwrap();
    let trailing_path = regex::Regex::new(r"self(?:\.[A-Za-z_][A-Za-z0-9_]*)*$").unwrap();
    let mut repeat = 1u64;
    for m in macro_re.find_iter(&rule.rule) {
        let receiver = rule.rule[..m.start()].trim_end();
        let range = if receiver.ends_with(']') {
            list_literal_len(receiver).ok_or("unbalanced list literal")?
        } else {
            let path = trailing_path
                .find(receiver)
                .ok_or_else(|| format!("cannot size the range of {}", m.as_str()))?
                .as_str();
            let target =
                resolve(&rule.node, path).ok_or_else(|| format!("{path} names no field"))?;
            target["maxItems"]
                .as_u64()
                .or(target["maxProperties"].as_u64())
                .ok_or_else(|| format!("{path} is iterated but has no maxItems/maxProperties"))?
        };
        repeat = repeat.saturating_mul(range + 1);
    }
    Ok((tokens(&rule.rule).len() as u64)
        .saturating_mul(BASE_STEP_COST + largest_value)
        .saturating_mul(repeat))
}

/// Number of elements of the list literal `text` ends with.
fn list_literal_len(text: &str) -> Option<u64> {
    let mut depth = 0i32;
    let mut elements = 1u64;
    for (i, c) in text.char_indices().rev() {
        match c {
            ']' | ')' | '}' => depth += 1,
            '[' | '(' | '{' => {
                depth -= 1;
                if depth == 0 {
                    return Some(if text[i + 1..text.len() - 1].trim().is_empty() {
                        0
                    } else {
                        elements
                    });
                }
            }
            ',' if depth == 1 => elements += 1,
            _ => {}
        }
    }
    None
}

#[test]
fn the_crds_carry_cel_rules() {
    // Guards the tests below against passing vacuously.
    let rules = rules();
    assert!(rules.len() >= 6, "{rules:?}");
    assert!(
        rules.iter().any(|r| r.cardinality.is_some_and(|c| c > 1)),
        "no rule sits under a list"
    );
}

#[test]
fn junctors_hold_only_what_structural_schemas_allow() {
    // apiextensions-apiserver pkg/apiserver/schema/validation.go: inside allOf, anyOf, oneOf
    // and not, a schema may not set type, additionalProperties, default, title, description,
    // nullable or x-kubernetes-* (and, from 1.25, x-kubernetes-validations), and every field it
    // names must be specified outside the junctor as well.
    const FORBIDDEN: [&str; 8] = [
        "type",
        "additionalProperties",
        "default",
        "title",
        "description",
        "nullable",
        "properties",
        "items",
    ];
    fn walk(crd: &str, node: &Value, path: &str, out: &mut Vec<String>) {
        for junctor in ["allOf", "anyOf", "oneOf"] {
            for branch in node[junctor].as_array().into_iter().flatten() {
                for key in branch.as_object().into_iter().flatten().map(|(k, _)| k) {
                    if FORBIDDEN.contains(&key.as_str()) || key.starts_with("x-kubernetes-") {
                        out.push(format!("{crd} {path}.{junctor}: sets {key}"));
                    }
                }
                for name in branch["required"].as_array().into_iter().flatten() {
                    let name = name.as_str().unwrap_or_default();
                    if node["properties"].get(name).is_none() {
                        out.push(format!(
                            "{crd} {path}.{junctor}: requires undeclared {name}"
                        ));
                    }
                }
            }
        }
        if node.get("not").is_some() {
            out.push(format!("{crd} {path}: uses not"));
        }
        for (name, child) in node["properties"].as_object().into_iter().flatten() {
            walk(crd, child, &format!("{path}.{name}"), out);
        }
        if let Some(items) = node.get("items") {
            walk(crd, items, &format!("{path}[*]"), out);
        }
        if is_map(node) {
            walk(
                crd,
                &node["additionalProperties"],
                &format!("{path}{{*}}"),
                out,
            );
        }
    }
    let mut problems = Vec::new();
    for (crd, schema) in crd_schemas() {
        walk(&crd, &schema, "", &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_rule_runs_a_bounded_number_of_times() {
    let unbounded: Vec<String> = rules()
        .iter()
        .filter(|r| r.cardinality.is_none())
        .map(|r| format!("{} {}: {}", r.crd, r.path, r.rule))
        .collect();
    assert!(
        unbounded.is_empty(),
        "rules under a list without maxItems or a map without maxProperties:\n{}",
        unbounded.join("\n")
    );
}

#[test]
fn every_rule_reaches_only_bounded_data() {
    let mut problems = Vec::new();
    for rule in rules() {
        let mut unbounded = Vec::new();
        unbounded_descendants(&rule.node, &rule.path, &mut unbounded);
        for u in unbounded {
            problems.push(format!("{}: {u}, reachable by `{}`", rule.crd, rule.rule));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_rule_touches_an_object_without_properties() {
    let mut problems = Vec::new();
    for rule in rules() {
        for (path, _) in paths(&rule.rule) {
            match resolve(&rule.node, &path) {
                None => problems.push(format!("{} {}: {path} names no field", rule.crd, rule.path)),
                Some(target) if is_empty_object(target) => problems.push(format!(
                    "{} {}: `{}` reads {path}, an object with neither properties nor additionalProperties (rejected at admission before Kubernetes 1.29)",
                    rule.crd, rule.path, rule.rule
                )),
                Some(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_rule_and_every_crd_fits_the_cost_budgets() {
    let mut problems = Vec::new();
    let mut totals: std::collections::BTreeMap<String, u64> = Default::default();
    for rule in rules() {
        let cost = match cost_bound(&rule) {
            Ok(cost) => cost,
            Err(e) => {
                problems.push(format!("{} {}: `{}`: {e}", rule.crd, rule.path, rule.rule));
                continue;
            }
        };
        if cost > PER_CALL_LIMIT {
            problems.push(format!(
                "{} {}: `{}` may cost {cost} per call",
                rule.crd, rule.path, rule.rule
            ));
        }
        let Some(cardinality) = rule.cardinality else {
            problems.push(format!(
                "{} {}: `{}` runs an unbounded number of times",
                rule.crd, rule.path, rule.rule
            ));
            continue;
        };
        let total = cost.saturating_mul(cardinality);
        if total > STATIC_ESTIMATED_COST_LIMIT {
            problems.push(format!(
                "{} {}: `{}` costs up to {cost} x {cardinality} = {total} > {STATIC_ESTIMATED_COST_LIMIT}",
                rule.crd, rule.path, rule.rule
            ));
        }
        *totals.entry(rule.crd.clone()).or_default() += total;
    }
    for (crd, total) in totals {
        if total > STATIC_ESTIMATED_CRD_COST_LIMIT {
            problems.push(format!(
                "{crd}: all rules cost up to {total} > {STATIC_ESTIMATED_CRD_COST_LIMIT}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_list_and_map_in_a_spec_is_bounded() {
    fn walk(node: &Value, path: &str, out: &mut Vec<String>) {
        if node["type"] == "array" {
            if node.get("maxItems").is_none() {
                out.push(format!("{path} (list without maxItems)"));
            }
            walk(&node["items"], &format!("{path}[*]"), out);
        } else if is_map(node) {
            if node.get("maxProperties").is_none() {
                out.push(format!("{path} (map without maxProperties)"));
            }
            walk(&node["additionalProperties"], &format!("{path}{{*}}"), out);
        }
        for (name, child) in node["properties"].as_object().into_iter().flatten() {
            walk(child, &format!("{path}.{name}"), out);
        }
    }
    let mut problems = Vec::new();
    for (crd, schema) in crd_schemas() {
        let mut found = Vec::new();
        walk(&schema["properties"]["spec"], "spec", &mut found);
        problems.extend(found.into_iter().map(|f| format!("{crd}: {f}")));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_cost_bound_is_not_below_what_the_api_server_reported() {
    // Kubernetes 1.28 rejected the unbounded filter list: 9.1 x 10,000,000 for a rule that the
    // estimator priced at 86 per call times 1,048,576 (3 MiB / the 3 bytes of `{},`). Our
    // bound for that rule alone must be at least the real per-call estimate.
    let node: Value = serde_json::json!({
        "type": "object",
        "properties": {
            "grep": {"type": "object", "properties": {}},
            "recordTransformer": {"type": "object", "properties": {}},
            "parser": {"type": "object", "properties": {}},
            "dedot": {"type": "object", "properties": {}}
        }
    });
    let rule = Rule {
        crd: "test".into(),
        path: "".into(),
        rule: "[has(self.grep), has(self.recordTransformer), has(self.parser), has(self.dedot)].filter(x, x).size() == 1".into(),
        cardinality: Some(1),
        node,
    };
    let reported = 91_000_000 / (3 * 1024 * 1024 / 3);
    assert!(
        cost_bound(&rule).unwrap() >= reported,
        "{} < {reported}",
        cost_bound(&rule).unwrap()
    );
}
