//! Shared by the render_* tests: hand-built pipelines, an independent reader of fluentd's
//! config syntax, label-router's documented match semantics, and a glob matcher.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use sluice::api::{LoggingSpec, OutputSpec, SecretKeyRef};
use sluice::layout::Names;
use sluice::model::{FlowPlan, Kind, ObjectKey, OutputPlan, Pipeline};
use sluice::routing::{FlowMatcher, Watched};

pub fn logging_spec(json: serde_json::Value) -> LoggingSpec {
    let mut value = serde_json::json!({"controlNamespace": "logging"});
    if let (Some(base), Some(extra)) = (value.as_object_mut(), json.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(value).expect("valid LoggingSpec")
}

pub fn output_spec(json: serde_json::Value) -> OutputSpec {
    serde_json::from_value(json).expect("valid OutputSpec")
}

/// An OutputPlan whose secret references are mounted as `<secret>-<key>` files.
pub fn output_plan(key: ObjectKey, spec: OutputSpec) -> OutputPlan {
    let mut secret_files = BTreeMap::new();
    let text = serde_json::to_value(&spec).unwrap_or_default();
    collect_refs(&text, &mut |r| {
        let file = format!("{}-{}", r.name, r.key)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        secret_files.insert(r, file);
    });
    OutputPlan {
        key,
        spec,
        secret_files,
    }
}

fn collect_refs(value: &serde_json::Value, found: &mut impl FnMut(SecretKeyRef)) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if (k.ends_with("SecretRef") || k == "passwordSecretRef")
                    && let Ok(r) = serde_json::from_value::<SecretKeyRef>(v.clone())
                {
                    found(r);
                    continue;
                }
                collect_refs(v, found);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, found)),
        _ => {}
    }
}

pub fn flow(key: ObjectKey, matcher: FlowMatcher, outputs: Vec<ObjectKey>) -> FlowPlan {
    FlowPlan {
        key,
        matcher,
        filters: Vec::new(),
        outputs,
    }
}

pub fn pipeline(spec: LoggingSpec, flows: Vec<FlowPlan>, outputs: Vec<OutputPlan>) -> Pipeline {
    Pipeline {
        logging: "main".to_owned(),
        logging_uid: None,
        names: Names::new("main", &spec.control_namespace),
        spec,
        watched: Watched::All,
        flows,
        default_flow: None,
        error_output: None,
        outputs: outputs.into_iter().map(|o| (o.key.clone(), o)).collect(),
        output_secret_data: BTreeMap::new(),
        problems: BTreeMap::new(),
        buffers: Default::default(),
    }
}

pub fn cluster_output_key(name: &str) -> ObjectKey {
    ObjectKey::cluster(Kind::ClusterOutput, name)
}

// ---------------------------------------------------------------------------------------
// An independent reader of fluentd's v1 config syntax (lib/fluent/config/v1_parser.rb and
// literal_parser.rb): directives, parameters, the three value forms and `@include`.

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string, with the Ruby snippets of any `#{...}` it embedded.
    Str {
        text: String,
        ruby: Vec<String>,
    },
    Json(serde_json::Value),
}

impl Value {
    pub fn text(&self) -> String {
        match self {
            Value::Str { text, .. } => text.clone(),
            Value::Json(v) => v.to_string(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Element {
    pub name: String,
    pub arg: String,
    pub params: Vec<(String, Value)>,
    pub children: Vec<Element>,
}

impl Element {
    pub fn param(&self, key: &str) -> Option<&Value> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn param_text(&self, key: &str) -> Option<String> {
        self.param(key).map(Value::text)
    }
    /// All elements in this subtree, depth first.
    pub fn walk(&self) -> Vec<&Element> {
        let mut all = vec![self];
        for child in &self.children {
            all.extend(child.walk());
        }
        all
    }
    /// Names, args and parameter keys only: what a hostile value must not change.
    pub fn shape(&self) -> String {
        let mut out = format!("<{} {}>", self.name, self.arg);
        for (k, _) in &self.params {
            out.push_str(&format!(" {k}"));
        }
        for child in &self.children {
            out.push_str(&child.shape());
        }
        out.push_str("</>");
        out
    }
}

/// Parses `main`, following `@include` of absolute paths found in `files`.
pub fn parse_fluentd(main: &str, files: &BTreeMap<String, String>) -> Result<Element, String> {
    let mut root = Element {
        name: "ROOT".into(),
        ..Default::default()
    };
    let mut stack: Vec<Element> = Vec::new();
    parse_into(main, files, &mut root, &mut stack, 0)?;
    if !stack.is_empty() {
        return Err(format!("unclosed <{}>", stack[stack.len() - 1].name));
    }
    Ok(root)
}

fn current<'a>(root: &'a mut Element, stack: &'a mut [Element]) -> &'a mut Element {
    match stack.last_mut() {
        Some(e) => e,
        None => root,
    }
}

fn parse_into(
    text: &str,
    files: &BTreeMap<String, String>,
    root: &mut Element,
    stack: &mut Vec<Element>,
    depth: usize,
) -> Result<(), String> {
    if depth > 4 {
        return Err("include depth".into());
    }
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("</") {
            let name = rest.strip_suffix('>').ok_or("bad close")?;
            let element = stack.pop().ok_or("close without open")?;
            if element.name != name {
                return Err(format!("</{name}> closes <{}>", element.name));
            }
            current(root, stack).children.push(element);
        } else if let Some(rest) = line.strip_prefix('<') {
            let inner = rest
                .strip_suffix('>')
                .ok_or_else(|| format!("bad open {line}"))?;
            let (name, arg) = inner.split_once(' ').unwrap_or((inner, ""));
            stack.push(Element {
                name: name.to_owned(),
                arg: arg.trim().to_owned(),
                ..Default::default()
            });
        } else if let Some(path) = line.strip_prefix("@include ") {
            let included = files
                .get(path.trim())
                .ok_or_else(|| format!("include of unknown file {path}"))?;
            parse_into(included, files, root, stack, depth + 1)?;
        } else {
            let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
            let value = parse_value(rest.trim_start())?;
            current(root, stack).params.push((key.to_owned(), value));
        }
    }
    Ok(())
}

fn parse_value(text: &str) -> Result<Value, String> {
    if text.starts_with('[') || text.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("bad JSON {text}: {e}"))?;
        return Ok(Value::Json(v));
    }
    if let Some(body) = text.strip_prefix('"') {
        let mut out = String::new();
        let mut ruby = Vec::new();
        let mut chars = body.chars().peekable();
        loop {
            match chars.next() {
                None => return Err(format!("unterminated string {text}")),
                Some('"') => {
                    let rest: String = chars.collect();
                    if !rest.trim().is_empty() {
                        return Err(format!("text after string: {rest}"));
                    }
                    return Ok(Value::Str { text: out, ruby });
                }
                Some('\\') => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some('f') => out.push('\u{0c}'),
                    Some('b') => out.push('\u{08}'),
                    Some(c) if c.is_ascii_alphanumeric() => {
                        return Err(format!("bad escape \\{c}"));
                    }
                    Some(c) => out.push(c),
                    None => return Err("dangling backslash".into()),
                },
                Some('#') if chars.peek() == Some(&'{') => {
                    chars.next();
                    let mut code = String::new();
                    let mut level = 1;
                    for c in chars.by_ref() {
                        match c {
                            '{' => level += 1,
                            '}' => {
                                level -= 1;
                                if level == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        code.push(c);
                    }
                    out.push_str("<ruby>");
                    ruby.push(code);
                }
                Some(c) => out.push(c),
            }
        }
    }
    Ok(Value::Str {
        text: text.to_owned(),
        ruby: Vec::new(),
    })
}

/// Every file of the rendered aggregator, by absolute in-pod path.
pub fn aggregator_files(shards: &[Vec<sluice::render::ConfigFile>]) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for (index, shard) in shards.iter().enumerate() {
        for file in shard {
            files.insert(
                format!(
                    "{}/{}",
                    sluice::layout::aggregator_shard_dir(index),
                    file.name
                ),
                file.content.clone(),
            );
        }
    }
    files
}

pub fn parse_aggregator(shards: &[Vec<sluice::render::ConfigFile>]) -> Element {
    let files = aggregator_files(shards);
    let main = format!(
        "{}/{}",
        sluice::layout::AGGREGATOR_CONFIG_DIR,
        sluice::layout::AGGREGATOR_CONFIG_FILE
    );
    parse_fluentd(&files[&main], &files).expect("rendered config parses")
}

// ---------------------------------------------------------------------------------------
// label-router semantics, from the plugin's documentation of `match?`: matches are
// evaluated in order; the first whose fields all hold decides, `negate` rejecting; none
// holding rejects. Lists need one equal value, hashes need every pair.

pub struct Metadata<'a> {
    pub namespace: &'a str,
    pub namespace_labels: &'a BTreeMap<String, String>,
    pub labels: &'a BTreeMap<String, String>,
    pub host: &'a str,
    pub container: &'a str,
}

fn list_holds(m: &Element, key: &str, actual: &str) -> bool {
    match m.param(key) {
        None => true,
        Some(Value::Json(serde_json::Value::Array(items))) => {
            items.is_empty() || items.iter().any(|i| i.as_str() == Some(actual))
        }
        Some(other) => panic!("{key} should be a JSON array, got {other:?}"),
    }
}

fn hash_holds(m: &Element, key: &str, actual: &BTreeMap<String, String>) -> bool {
    match m.param(key) {
        None => true,
        Some(Value::Json(serde_json::Value::Object(map))) => map
            .iter()
            .all(|(k, v)| actual.get(k).map(String::as_str) == v.as_str()),
        Some(other) => panic!("{key} should be a JSON object, got {other:?}"),
    }
}

pub fn route_takes(route: &Element, md: &Metadata<'_>) -> bool {
    for m in route.children.iter().filter(|c| c.name == "match") {
        let holds = list_holds(m, "hosts", md.host)
            && list_holds(m, "container_names", md.container)
            && list_holds(m, "namespaces", md.namespace)
            && hash_holds(m, "namespace_labels", md.namespace_labels)
            && hash_holds(m, "labels", md.labels);
        if holds {
            return m.param_text("negate").as_deref() != Some("true");
        }
    }
    false
}

/// The label_router directive of a parsed aggregator config.
pub fn router(root: &Element) -> &Element {
    root.children
        .iter()
        .find(|e| e.name == "match" && e.param_text("@type").as_deref() == Some("label_router"))
        .expect("a label_router match")
}

// ---------------------------------------------------------------------------------------

/// Shell glob with `*` and `?` (what fluent-bit's tail uses for `path`/`exclude_path`).
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|i| go(&p[1..], &t[i..])),
            Some('?') => !t.is_empty() && go(&p[1..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

pub fn watched(namespaces: &[&str]) -> Watched {
    Watched::Only(
        namespaces
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
    )
}
