//! The documents `sluice migrate` reads: logging-operator objects, plus the Namespaces (their
//! labels) and Secrets (user names Sluice takes as literals) next to them.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;

use super::yaml::{Node, Value};

/// logging-operator's API group and the version its objects are read in.
pub const INCUMBENT_GROUP: &str = "logging.banzaicloud.io";
pub const INCUMBENT_API_VERSION: &str = "logging.banzaicloud.io/v1beta1";

/// One document as the shell read it: from a file (with its place) or from the API server
/// (`file` names the cluster, lines are 0).
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub file: String,
    /// 1-based index of the document in its file.
    pub index: usize,
    /// 1-based line where the document starts.
    pub line: usize,
    pub root: Node,
}

/// The logging-operator kinds `sluice migrate` knows.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    Logging,
    FluentbitAgent,
    FluentdConfig,
    LoggingRoute,
    ClusterOutput,
    ClusterFlow,
    Output,
    Flow,
    /// A kind of the group Sluice has nothing for (syslog-ng, tailers, ...), by name.
    Other(String),
}

impl SourceKind {
    fn of(kind: &str) -> SourceKind {
        match kind {
            "Logging" => SourceKind::Logging,
            "FluentbitAgent" => SourceKind::FluentbitAgent,
            "FluentdConfig" => SourceKind::FluentdConfig,
            "LoggingRoute" => SourceKind::LoggingRoute,
            "ClusterOutput" => SourceKind::ClusterOutput,
            "ClusterFlow" => SourceKind::ClusterFlow,
            "Output" => SourceKind::Output,
            "Flow" => SourceKind::Flow,
            other => SourceKind::Other(other.to_owned()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            SourceKind::Logging => "Logging",
            SourceKind::FluentbitAgent => "FluentbitAgent",
            SourceKind::FluentdConfig => "FluentdConfig",
            SourceKind::LoggingRoute => "LoggingRoute",
            SourceKind::ClusterOutput => "ClusterOutput",
            SourceKind::ClusterFlow => "ClusterFlow",
            SourceKind::Output => "Output",
            SourceKind::Flow => "Flow",
            SourceKind::Other(name) => name,
        }
    }

    /// Whether the object means nothing without its namespace. ClusterFlows, ClusterOutputs
    /// and FluentdConfigs are namespaced too, but belong in the control namespace: a file
    /// that leaves it out (for kustomize or `kubectl -n` to fill in) is read as meaning it.
    fn needs_namespace(&self) -> bool {
        matches!(self, SourceKind::Output | SourceKind::Flow)
    }

    /// Whether logging-operator's CRD for the kind is cluster-scoped (a namespace written
    /// on such an object means nothing).
    fn cluster_scoped(&self) -> bool {
        matches!(
            self,
            SourceKind::Logging | SourceKind::FluentbitAgent | SourceKind::LoggingRoute
        )
    }
}

/// Identifies a logging-operator object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId {
    pub kind: SourceKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind.name(), self.name),
            None => write!(f, "{} {}", self.kind.name(), self.name),
        }
    }
}

/// One logging-operator object and where it was read.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceObject {
    pub id: SourceId,
    pub file: String,
    pub document: usize,
    pub line: usize,
    pub labels: BTreeMap<String, String>,
    /// `spec` (a null node when absent).
    pub spec: Node,
    /// Line of the `spec` key (the document's line when absent).
    pub spec_line: usize,
}

impl SourceObject {
    /// `file:line` of a line of this object (the file alone when lines are unknown).
    pub fn place(&self, line: usize) -> String {
        if line == 0 {
            self.file.clone()
        } else {
            format!("{}:{line}", self.file)
        }
    }

    /// `spec.loggingRef`, empty when unset (logging-operator compares the strings).
    pub fn logging_ref(&self) -> String {
        self.spec
            .get("loggingRef")
            .and_then(Node::scalar_text)
            .unwrap_or_default()
    }
}

/// Something wrong with the input that stops the migration: file, object and field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateError {
    pub file: String,
    pub document: usize,
    pub line: usize,
    /// `Kind namespace/name`, when known.
    pub object: Option<String>,
    /// Field path such as `spec.match[0].select`, when known.
    pub field: Option<String>,
    pub message: String,
}

/// Everything read: logging-operator objects sorted by id, Namespace labels, Secret values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Input {
    pub objects: Vec<SourceObject>,
    /// Namespaces given as `v1 Namespace` documents, with their labels.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// `v1 Secret` documents: (namespace, name) → key → value, read only for values Sluice
    /// takes as literals (user names).
    pub secrets: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// Documents of other kinds, skipped.
    pub skipped: usize,
}

/// Sorts the documents into an [`Input`]; every malformed document is an error.
pub fn read(documents: &[Document]) -> Result<Input, Vec<MigrateError>> {
    let mut input = Input::default();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<SourceId, String> = BTreeMap::new();
    for document in documents {
        for object in list_items(document) {
            if let Err(error) = read_document(&object, &mut input, &mut seen) {
                errors.push(*error);
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    input.objects.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(input)
}

/// The objects of a document: its `items` when it is a list (`kubectl get -o yaml` writes a
/// `v1 List`, the API server a `<Kind>List`), else the document itself.
fn list_items(document: &Document) -> Vec<std::borrow::Cow<'_, Document>> {
    let kind = document
        .root
        .get("kind")
        .and_then(Node::as_str)
        .unwrap_or_default();
    match document.root.get("items").map(|items| &items.value) {
        Some(Value::Seq(items)) if kind.ends_with("List") => items
            .iter()
            .map(|item| {
                std::borrow::Cow::Owned(Document {
                    file: document.file.clone(),
                    index: document.index,
                    line: if item.line == 0 {
                        document.line
                    } else {
                        item.line
                    },
                    root: item.clone(),
                })
            })
            .collect(),
        _ => vec![std::borrow::Cow::Borrowed(document)],
    }
}

fn read_document(
    document: &Document,
    input: &mut Input,
    seen: &mut BTreeMap<SourceId, String>,
) -> Result<(), Box<MigrateError>> {
    let fail = |line: usize, object: Option<String>, field: Option<&str>, message: String| {
        Box::new(MigrateError {
            file: document.file.clone(),
            document: document.index,
            line: if line == 0 { document.line } else { line },
            object,
            field: field.map(str::to_owned),
            message,
        })
    };
    let root = &document.root;
    if root.is_null() {
        return Ok(());
    }
    if !matches!(root.value, Value::Map(_)) {
        return Err(fail(
            root.line,
            None,
            None,
            format!(
                "a document must be a Kubernetes object (a mapping), not {}",
                root.type_name()
            ),
        ));
    }
    let text = |key: &str| root.get(key).and_then(Node::as_str).unwrap_or_default();
    let api_version = text("apiVersion");
    let kind_name = text("kind");
    let metadata = root.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_owned();
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Node::as_str)
        .map(str::to_owned);
    let labels = metadata
        .and_then(|m| m.get("labels"))
        .and_then(string_map)
        .unwrap_or_default();
    let (group, _) = api_version.split_once('/').unwrap_or(("", api_version));
    match (api_version, kind_name) {
        ("v1", "Namespace") if !name.is_empty() => {
            input.namespaces.insert(name, labels);
            return Ok(());
        }
        ("v1", "Secret") => {
            if let (Some(ns), false) = (namespace, name.is_empty()) {
                input.secrets.insert((ns, name), secret_values(root));
            }
            return Ok(());
        }
        _ if group != INCUMBENT_GROUP => {
            input.skipped += 1;
            return Ok(());
        }
        _ => {}
    }
    let kind = SourceKind::of(kind_name);
    let label = match &namespace {
        Some(ns) => format!("{kind_name} {ns}/{name}"),
        None => format!("{kind_name} {name}"),
    };
    if api_version != INCUMBENT_API_VERSION {
        return Err(fail(
            root.entry("apiVersion").map_or(0, |e| e.line),
            Some(label),
            Some("apiVersion"),
            format!(
                "{api_version} is not read; convert the objects to {INCUMBENT_API_VERSION} first (logging-operator's conversion webhook serves both)"
            ),
        ));
    }
    let metadata_line = root.entry("metadata").map_or(0, |e| e.line);
    if name.is_empty() {
        return Err(fail(
            metadata_line,
            Some(kind_name.to_owned()),
            Some("metadata.name"),
            "required".into(),
        ));
    }
    let namespace = match (kind.needs_namespace(), kind.cluster_scoped(), namespace) {
        (true, _, None) => {
            return Err(fail(
                metadata_line,
                Some(label),
                Some("metadata.namespace"),
                format!("required: logging-operator's {kind_name} is namespaced"),
            ));
        }
        (_, true, Some(_)) => None,
        (_, _, namespace) => namespace,
    };
    let id = SourceId {
        kind,
        namespace,
        name,
    };
    let place = format!("{}:{}", document.file, document.line);
    if let Some(first) = seen.insert(id.clone(), place) {
        return Err(fail(
            metadata_line,
            Some(label),
            Some("metadata.name"),
            format!("defined twice (first at {first})"),
        ));
    }
    let (spec, spec_line) = match root.entry("spec") {
        Some(entry) if matches!(entry.node.value, Value::Map(_) | Value::Null) => {
            (entry.node.clone(), entry.line)
        }
        Some(entry) => {
            return Err(fail(
                entry.line,
                Some(label),
                Some("spec"),
                format!("must be a mapping, not {}", entry.node.type_name()),
            ));
        }
        None => (Node::null(document.line), document.line),
    };
    input.objects.push(SourceObject {
        id,
        file: document.file.clone(),
        document: document.index,
        line: document.line,
        labels,
        spec,
        spec_line,
    });
    Ok(())
}

/// A mapping of scalars as strings; `None` when it is anything else.
pub fn string_map(node: &Node) -> Option<BTreeMap<String, String>> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .map(|e| Some((e.key.clone(), e.node.scalar_text()?)))
            .collect(),
        Value::Null => Some(BTreeMap::new()),
        _ => None,
    }
}

/// A list of scalars as strings; `None` when it is anything else.
pub fn string_list(node: &Node) -> Option<Vec<String>> {
    match &node.value {
        Value::Seq(items) => items.iter().map(Node::scalar_text).collect(),
        Value::Null => Some(Vec::new()),
        _ => None,
    }
}

/// A Secret's values: `stringData` over base64-decoded `data`, text only.
fn secret_values(root: &Node) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    if let Some(Value::Map(entries)) = root.get("data").map(|d| &d.value) {
        for entry in entries {
            let decoded = entry
                .node
                .as_str()
                .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
                .and_then(|bytes| String::from_utf8(bytes).ok());
            if let Some(value) = decoded {
                values.insert(entry.key.clone(), value);
            }
        }
    }
    if let Some(data) = root.get("stringData").and_then(string_map) {
        values.extend(data);
    }
    values
}
