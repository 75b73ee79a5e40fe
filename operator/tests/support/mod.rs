//! Shared by the render_* tests: hand-built pipelines, an independent reader of fluentd's
//! config syntax, the agent's routing filter under LuaJIT, and a glob matcher.
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
    FlowPlan::new(key, matcher, Vec::new(), outputs)
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
        capacity: Default::default(),
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

/// Parses `main`, following `@include` of the files named in `files`.
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
/// The files of one installed revision, by name: `fluent.conf` includes the slots by relative
/// path, so names are what `@include` refers to.
pub fn aggregator_files(
    files: &sluice::render::fluentd::AggregatorFiles,
) -> BTreeMap<String, String> {
    files
        .all()
        .map(|file| (file.name.clone(), file.content.clone()))
        .collect()
}

/// A file's name without its content hash (`<12 hex>-name`), so golden files keep their
/// names when the content changes.
pub fn stable_name(name: &str) -> &str {
    match name.split_once('-') {
        Some((hash, rest)) if hash.len() == 12 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            rest
        }
        _ => name,
    }
}

/// The aggregator's files as golden files see them: the main files and the shared ones by
/// stable name, and the non-empty slots together under `slots`.
pub fn aggregator_snapshots(
    files: &sluice::render::fluentd::AggregatorFiles,
) -> Vec<(String, String)> {
    let mut snapshots: Vec<(String, String)> = files
        .main
        .iter()
        .chain(&files.shared)
        .map(|file| (stable_name(&file.name).to_owned(), file.content.clone()))
        .collect();
    let slots: String = files
        .slots
        .iter()
        .filter(|slot| !slot.content.starts_with("# Slot "))
        .map(|slot| format!("## {}\n{}", slot.name, slot.content))
        .collect();
    snapshots.push(("slots".to_owned(), slots));
    snapshots
}

pub fn parse_aggregator(files: &sluice::render::fluentd::AggregatorFiles) -> Element {
    let files = aggregator_files(files);
    parse_fluentd(&files[sluice::layout::AGGREGATOR_CONFIG_FILE], &files)
        .expect("rendered config parses")
}

// ---------------------------------------------------------------------------------------

/// The aggregator's dispatch: every flow's top-level `<match sluice.<route>> @type relabel`,
/// tag → `@label`.
pub fn dispatch(root: &Element) -> BTreeMap<String, String> {
    root.children
        .iter()
        .filter(|e| e.name == "match" && e.param_text("@type").as_deref() == Some("relabel"))
        // The catch-all of routes this configuration does not dispatch is not a flow's.
        .filter(|e| !e.arg.ends_with("**"))
        .map(|e| {
            (
                e.arg.clone(),
                e.param_text("@label").expect("relabel has a @label"),
            )
        })
        .collect()
}

/// The agent's routing filter running in a real LuaJIT, reading the routing table of a
/// pipeline from a temporary directory, with a clock the test sets.
pub struct EdgeRouter {
    pub lua: mlua::Lua,
    pub dir: tempfile::TempDir,
}

impl EdgeRouter {
    pub fn new(p: &Pipeline) -> Self {
        Self::with_routes(&sluice::render::agent_routes(p)).expect("the filter loads")
    }

    /// Loads the filter against these routing files.
    pub fn with_routes(routes: &sluice::render::edge::AgentRoutes) -> mlua::Result<Self> {
        let files: Vec<(String, String)> = routes
            .files()
            .map(|f| (f.name.clone(), f.content.clone()))
            .collect();
        Self::with_files(&files)
    }

    /// Loads the filter against a routing directory holding exactly `files` (name, content).
    pub fn with_files(files: &[(String, String)]) -> mlua::Result<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let router = EdgeRouter {
            lua: mlua::Lua::new(),
            dir,
        };
        for (name, content) in files {
            router.write_file(name, content);
        }
        router
            .lua
            .load("os.time = function() return now or 0 end")
            .exec()?;
        let script = sluice::render::edge::filter_script(router.dir.path().to_str().unwrap());
        router
            .lua
            .load(&script)
            .set_name("sluice-router.lua")
            .exec()?;
        Ok(router)
    }

    /// Replaces one routing file the way kubelet updates a Secret volume: a new file moved in
    /// place.
    pub fn write_file(&self, name: &str, content: &str) {
        let staged = self.dir.path().join("..staged");
        std::fs::write(&staged, content).unwrap();
        std::fs::rename(&staged, self.dir.path().join(name)).unwrap();
    }

    /// Replaces every routing file with those of `routes`.
    pub fn write_routes(&self, routes: &sluice::render::edge::AgentRoutes) {
        for file in routes.files() {
            self.write_file(&file.name, &file.content);
        }
    }

    pub fn set_time(&self, seconds: i64) {
        self.lua.globals().set("now", seconds).unwrap();
    }

    /// Runs the filter on a record with this metadata, as fluent-bit's kubernetes filter
    /// attaches it. Returns the routes of the records that leave the filter, in order.
    pub fn routes(&self, record: &sluice::routing::Record) -> Vec<String> {
        let tag = format!(
            "kube.{}.pod-1.{}.{}",
            record.namespace,
            record.container,
            "0".repeat(64)
        );
        self.routes_tagged(&tag, record)
    }

    /// [`Self::routes`] for a record arriving under `tag`: the filter keeps its decisions per
    /// tag, so tests choose tags to make it reuse or revisit one.
    pub fn routes_tagged(&self, tag: &str, record: &sluice::routing::Record) -> Vec<String> {
        let lua = &self.lua;
        let table = |map: &BTreeMap<String, String>| {
            let t = lua.create_table().unwrap();
            for (k, v) in map {
                t.set(k.as_str(), v.as_str()).unwrap();
            }
            t
        };
        let kubernetes = lua.create_table().unwrap();
        kubernetes
            .set("namespace_name", record.namespace.as_str())
            .unwrap();
        kubernetes.set("pod_name", "pod-1").unwrap();
        kubernetes
            .set("container_name", record.container.as_str())
            .unwrap();
        kubernetes.set("host", record.host.as_str()).unwrap();
        kubernetes.set("labels", table(&record.labels)).unwrap();
        let namespace = lua.create_table().unwrap();
        namespace.set("name", record.namespace.as_str()).unwrap();
        namespace
            .set("labels", table(&record.namespace_labels))
            .unwrap();
        let body = lua.create_table().unwrap();
        body.set("log", "hello").unwrap();
        body.set("kubernetes", kubernetes).unwrap();
        body.set("kubernetes_namespace", namespace).unwrap();

        let function: mlua::Function = lua
            .globals()
            .get(sluice::render::edge::LUA_FUNCTION)
            .unwrap();
        let (code, timestamp, out): (i64, f64, mlua::Table) =
            function.call((tag, 1.5, body)).expect("the filter runs");
        assert_eq!(timestamp, 1.5);
        let key = sluice::render::edge::ROUTE_KEY;
        match code {
            -1 => Vec::new(),
            2 => {
                // fluent-bit packs a table with only keys 1..n as an array of records.
                let records: Vec<mlua::Table> = if out.raw_len() > 0 {
                    out.sequence_values().map(|r| r.unwrap()).collect()
                } else {
                    vec![out]
                };
                records
                    .iter()
                    .map(|r| {
                        // Each copy is the whole record plus its route.
                        assert_eq!(r.get::<String>("log").unwrap(), "hello");
                        let k: mlua::Table = r.get("kubernetes").unwrap();
                        assert_eq!(k.get::<String>("namespace_name").unwrap(), record.namespace);
                        r.get::<String>(key).unwrap()
                    })
                    .collect()
            }
            other => panic!("unexpected return code {other}"),
        }
    }
}

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

// ---------------------------------------------------------------------------------------
// An independent model of how fluentd 1.17 routes an event stream through a configuration
// (lib/fluent/event_router.rb `find`, lib/fluent/match.rb, lib/fluent/plugin/out_relabel.rb,
// out_copy.rb): in a router (the root or a `<label>`), every `<filter>` whose pattern
// matches the tag, in order, until the first `<match>` whose pattern does; `relabel` goes on
// in its label's router, `copy` hands each `<store>` the stream, `null` drops it, any other
// output receives it.

/// fluentd's `MatchPattern` for one pattern word: `**`, a `/regex/`, or a glob where `*` is
/// one tag part, `**` any parts and `{a,b}` alternatives.
fn pattern_regex(word: &str) -> regex::Regex {
    if word == "**" {
        return regex::Regex::new(".*").unwrap();
    }
    if let Some(inner) = word.strip_prefix('/').and_then(|w| w.strip_suffix('/')) {
        return regex::Regex::new(&format!(r"\A(?:{inner})\z")).unwrap();
    }
    let mut out = String::from(r"\A");
    let chars: Vec<char> = word.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                out.push_str(".*");
                i += 1;
            }
            '*' => out.push_str(r"[^.]*"),
            '{' => out.push_str("(?:"),
            '}' => out.push(')'),
            ',' => out.push('|'),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    out.push_str(r"\z");
    regex::Regex::new(&out).unwrap()
}

thread_local! {
    static PATTERNS: std::cell::RefCell<BTreeMap<String, regex::Regex>> =
        const { std::cell::RefCell::new(BTreeMap::new()) };
}

/// Whether a `<match>`/`<filter>` argument (space-separated patterns, empty meaning `**`)
/// matches `tag`.
pub fn tag_matches(arg: &str, tag: &str) -> bool {
    let arg = if arg.trim().is_empty() { "**" } else { arg };
    arg.split_whitespace().any(|word| {
        PATTERNS.with(|cache| {
            cache
                .borrow_mut()
                .entry(word.to_owned())
                .or_insert_with(|| pattern_regex(word))
                .is_match(tag)
        })
    })
}

/// Where one event stream with `tag` ends: for every output plugin reached, its `@id` (or
/// `@type` without one) and the filters the stream passed on the way, as their element
/// shapes. A `null` without an `@id` (a catch-all) reaches nothing; a null output Sluice
/// renders for an Output has one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Delivery {
    pub output: String,
    pub filters: Vec<String>,
}

pub fn route_through(root: &Element, tag: &str) -> Vec<Delivery> {
    let mut deliveries = Vec::new();
    route_in(root, root, tag, Vec::new(), &mut deliveries, 0);
    deliveries.sort();
    deliveries
}

fn label<'a>(root: &'a Element, name: &str) -> &'a Element {
    root.children
        .iter()
        .find(|e| e.name == "label" && e.arg == name)
        .unwrap_or_else(|| panic!("label {name} is not defined"))
}

fn route_in(
    root: &Element,
    router: &Element,
    tag: &str,
    mut filters: Vec<String>,
    deliveries: &mut Vec<Delivery>,
    depth: usize,
) {
    assert!(depth < 8, "relabel loop for {tag}");
    for element in &router.children {
        if !tag_matches(&element.arg, tag) {
            continue;
        }
        match element.name.as_str() {
            "filter" => filters.push(element.shape()),
            "match" => {
                hand_to(root, element, tag, filters, deliveries, depth);
                return;
            }
            _ => {}
        }
    }
    // No match: fluentd warns and drops.
}

fn hand_to(
    root: &Element,
    output: &Element,
    tag: &str,
    filters: Vec<String>,
    deliveries: &mut Vec<Delivery>,
    depth: usize,
) {
    match output.param_text("@type").as_deref() {
        Some("null") if output.param("@id").is_none() => {}
        Some("relabel") => {
            let name = output.param_text("@label").expect("relabel names a label");
            route_in(
                root,
                label(root, &name),
                tag,
                filters,
                deliveries,
                depth + 1,
            );
        }
        Some("copy") => {
            for store in output.children.iter().filter(|e| e.name == "store") {
                hand_to(root, store, tag, filters.clone(), deliveries, depth);
            }
        }
        Some(other) => deliveries.push(Delivery {
            output: output.param_text("@id").unwrap_or_else(|| other.to_owned()),
            filters,
        }),
        None => panic!("an output without @type: {}", output.shape()),
    }
}
