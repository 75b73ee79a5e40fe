//! Reads Sluice resources (and the Secrets and Namespaces they need) from YAML files, with
//! errors that name the file, line, document, object and field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::API_VERSION;
use crate::model::{Kind, ObjectKey, Objects};

/// Where an object was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based index of the document in its file; 0 for problems with the whole file.
    pub document: usize,
    /// 1-based line where the document starts.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.document == 0 {
            return write!(f, "{}", self.file.display());
        }
        write!(
            f,
            "{}:{} (document {})",
            self.file.display(),
            self.line,
            self.document
        )
    }
}

/// One problem with the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    pub origin: Option<Origin>,
    /// `Kind namespace/name`, when known.
    pub object: Option<String>,
    /// Field path such as `spec.match[0].select`, when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// What was read: the objects and where each Sluice object came from.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub objects: Objects,
    pub origins: BTreeMap<ObjectKey, Origin>,
}

/// Reads every `.yaml`/`.yml` file in the given files and directories (recursively, sorted).
/// Returns every error found, not just the first.
pub fn load(paths: &[PathBuf]) -> Result<Loaded, Vec<InputError>> {
    let (files, mut errors) = yaml_files(paths);
    let mut loaded = Loaded::default();
    let mut seen_secrets = BTreeMap::new();
    for file in &files {
        match std::fs::read_to_string(file) {
            Ok(text) => load_text(file, &text, &mut loaded, &mut seen_secrets, &mut errors),
            Err(e) => errors.push(file_error(file, format!("cannot read: {e}"))),
        }
    }
    let inventory = &loaded.objects;
    if errors.is_empty() && inventory.loggings.is_empty() && loaded.origins.is_empty() {
        errors.push(InputError {
            origin: None,
            object: None,
            field: None,
            message: format!(
                "no Sluice resources found in {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(errors)
    }
}

/// Every `.yaml`/`.yml` file in the given files and directories (recursively, sorted), and
/// the paths that could not be read.
pub fn yaml_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<InputError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if let Err(error) = collect_files(path, &mut files) {
            errors.push(error);
        }
    }
    (files, errors)
}

pub fn file_error(file: &Path, message: String) -> InputError {
    InputError {
        origin: Some(Origin {
            file: file.to_owned(),
            document: 0,
            line: 0,
        }),
        object: None,
        field: None,
        message,
    }
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let metadata =
        std::fs::metadata(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    if metadata.is_file() {
        files.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| file_error(path, format!("cannot list: {e}")))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_files(&entry, files)?;
        } else if entry
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            files.push(entry);
        }
    }
    Ok(())
}

/// Reads the Secrets of a YAML stream and ignores every other document.
pub fn load_secrets(
    path: &Path,
) -> Result<Vec<k8s_openapi::api::core::v1::Secret>, Vec<InputError>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![file_error(path, format!("cannot read: {e}"))])?;
    let mut secrets = Vec::new();
    let mut errors = Vec::new();
    for (index, (line, document)) in split_documents(&text).into_iter().enumerate() {
        let origin = Origin {
            file: path.to_owned(),
            document: index + 1,
            line,
        };
        let parsed = serde_saphyr::from_str::<Value>(&document)
            .map_err(|e| e.to_string())
            .and_then(|value| {
                if value.get("kind").and_then(Value::as_str) != Some("Secret") {
                    return Ok(None);
                }
                typed(value)
                    .map(Some)
                    .map_err(|(field, message)| format!("{field}: {message}"))
            });
        match parsed {
            Ok(Some(secret)) => secrets.push(secret),
            Ok(None) => {}
            Err(message) => errors.push(InputError {
                origin: Some(origin),
                object: None,
                field: None,
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(secrets)
    } else {
        Err(errors)
    }
}

/// Splits a YAML stream at `---` lines, keeping each document's first line number, so errors
/// point at the right place even for empty documents.
pub fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (index, line) in text.lines().enumerate() {
        let is_separator = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_separator {
            if !current.trim().is_empty() || !documents.is_empty() || index > 0 {
                documents.push((start, std::mem::take(&mut current)));
            }
            // The separator line is line 1 of the next chunk (it may carry content after `---`).
            start = index + 1;
            current.push_str(line.trim_start_matches('-'));
            current.push('\n');
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    documents.push((start, current));
    documents.retain(|(_, doc)| !is_blank_document(doc));
    documents
}

fn is_blank_document(doc: &str) -> bool {
    doc.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "..."
    })
}

fn load_text(
    file: &Path,
    text: &str,
    loaded: &mut Loaded,
    seen_secrets: &mut BTreeMap<(String, String), Origin>,
    errors: &mut Vec<InputError>,
) {
    for (index, (line, document)) in split_documents(text).into_iter().enumerate() {
        let origin = Origin {
            file: file.to_owned(),
            document: index + 1,
            line,
        };
        let value: Value = match serde_saphyr::from_str(&document) {
            Ok(value) => value,
            Err(e) => {
                errors.push(syntax_error(origin, &e));
                continue;
            }
        };
        if let Err(error) = load_document(value, &origin, loaded, seen_secrets) {
            errors.push(*error);
        }
    }
}

/// A YAML syntax error in the document at `origin`, at its line and column in the file.
pub fn syntax_error(origin: Origin, error: &serde_saphyr::Error) -> InputError {
    let at = error
        .location()
        .map(|l| {
            format!(
                "line {}, column {}: ",
                l.line() as usize + origin.line - 1,
                l.column()
            )
        })
        .unwrap_or_default();
    InputError {
        origin: Some(origin),
        object: None,
        field: None,
        message: format!("YAML syntax error: {at}{}", first_line(&error.to_string())),
    }
}

/// The parser's message without its own (chunk-relative) position, which we replace with
/// the position in the file.
fn first_line(message: &str) -> &str {
    let line = message.lines().next().unwrap_or(message);
    let without_prefix = line.strip_prefix("error: ").unwrap_or(line);
    match without_prefix.split_once(": ") {
        Some((position, rest)) if position.starts_with("line ") => rest,
        _ => without_prefix,
    }
}

fn load_document(
    value: Value,
    origin: &Origin,
    loaded: &mut Loaded,
    seen_secrets: &mut BTreeMap<(String, String), Origin>,
) -> Result<(), Box<InputError>> {
    let fail = |object: Option<String>, field: Option<&str>, message: String| {
        Box::new(InputError {
            origin: Some(origin.clone()),
            object,
            field: field.map(str::to_owned),
            message,
        })
    };
    if !value.is_object() {
        return Err(fail(
            None,
            None,
            "a document must be a Kubernetes object (a mapping)".into(),
        ));
    }
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kind_name = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let namespace = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let label = match &namespace {
        Some(ns) => format!("{kind_name} {ns}/{name}"),
        None => format!("{kind_name} {name}"),
    };
    if name.is_empty() {
        return Err(fail(
            Some(kind_name),
            Some("metadata.name"),
            "required".into(),
        ));
    }
    let inventory = &mut loaded.objects;
    match (api_version.as_str(), kind_name.as_str()) {
        ("v1", "Secret") => {
            let Some(ns) = namespace.clone() else {
                return Err(fail(
                    Some(label),
                    Some("metadata.namespace"),
                    "required: Secrets are namespaced".into(),
                ));
            };
            if seen_secrets.insert((ns, name), origin.clone()).is_some() {
                return Err(fail(
                    Some(label),
                    Some("metadata.name"),
                    "defined twice".into(),
                ));
            }
            inventory
                .secrets
                .push(typed(value).map_err(|(field, message)| {
                    fail(Some(label.clone()), Some(&field), message)
                })?);
            return Ok(());
        }
        ("v1", "Namespace") => {
            inventory
                .namespaces
                .push(typed(value).map_err(|(field, message)| {
                    fail(Some(label.clone()), Some(&field), message)
                })?);
            return Ok(());
        }
        (API_VERSION, _) => {}
        (_, _) if api_version.starts_with("logging.sluice.dev/") => {
            return Err(fail(
                Some(label),
                Some("apiVersion"),
                format!("unsupported version {api_version:?}; this Sluice serves {API_VERSION}"),
            ));
        }
        _ => {
            return Err(fail(
                Some(label),
                Some("kind"),
                format!(
                    "{api_version} {kind_name} is not a Sluice resource (expected {API_VERSION} Logging, Flow, ClusterFlow, Output or ClusterOutput, or v1 Secret or Namespace)"
                ),
            ));
        }
    }
    let kind = match kind_name.as_str() {
        "Logging" => Kind::Logging,
        "Flow" => Kind::Flow,
        "ClusterFlow" => Kind::ClusterFlow,
        "Output" => Kind::Output,
        "ClusterOutput" => Kind::ClusterOutput,
        other => {
            return Err(fail(
                Some(label),
                Some("kind"),
                format!("unknown kind {other:?}"),
            ));
        }
    };
    let namespaced = matches!(kind, Kind::Flow | Kind::Output);
    let key = match (&namespace, namespaced) {
        (Some(ns), true) => ObjectKey::namespaced(kind, ns, &name),
        (None, false) => ObjectKey::cluster(kind, &name),
        (None, true) => {
            return Err(fail(
                Some(label),
                Some("metadata.namespace"),
                format!("required: {kind_name} is namespaced"),
            ));
        }
        (Some(_), false) => {
            return Err(fail(
                Some(label),
                Some("metadata.namespace"),
                format!("must be empty: {kind_name} is cluster-scoped"),
            ));
        }
    };
    if let Some(first) = loaded.origins.get(&key) {
        return Err(fail(
            Some(label),
            Some("metadata.name"),
            format!("defined twice (first at {first})"),
        ));
    }
    let wrap =
        |(field, message): (String, String)| fail(Some(label.clone()), Some(&field), message);
    match kind {
        Kind::Logging => inventory.loggings.push(typed(value).map_err(wrap)?),
        Kind::Flow => inventory.flows.push(typed(value).map_err(wrap)?),
        Kind::ClusterFlow => inventory.cluster_flows.push(typed(value).map_err(wrap)?),
        Kind::Output => inventory.outputs.push(typed(value).map_err(wrap)?),
        Kind::ClusterOutput => inventory.cluster_outputs.push(typed(value).map_err(wrap)?),
    }
    loaded.origins.insert(key, origin.clone());
    Ok(())
}

/// Deserializes strictly: unknown fields are errors (the API server would silently prune
/// them, which hides typos), and errors carry the field path.
fn typed<T: DeserializeOwned>(value: Value) -> Result<T, (String, String)> {
    let mut unknown = Vec::new();
    let result: Result<T, _> = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
        value,
        &mut |path: serde_ignored::Path<'_>| {
            let path = field_path(&path);
            // Custom resource structs take apiVersion and kind from their type, not as fields.
            if path != "apiVersion" && path != "kind" {
                unknown.push(path);
            }
        },
    ));
    match result {
        Ok(object) => match unknown.first() {
            None => Ok(object),
            Some(path) => {
                let (parent, field) = path
                    .rsplit_once('.')
                    .unwrap_or(("(top level)", path.as_str()));
                Err((parent.to_owned(), format!("unknown field {field:?}")))
            }
        },
        Err(e) => Err((e.path().to_string(), e.into_inner().to_string())),
    }
}

/// `spec.match[0].select` style, as Kubernetes prints field paths.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => {
            let parent = field_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}
