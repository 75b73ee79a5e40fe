//! Reading one source object field by field. Every field read is reported (converted,
//! changed, not converted, not needed, to do); at the end [`Fields::sweep`] reports every
//! field nobody read as not converted, so no field of the source goes unmentioned.

use std::collections::{BTreeMap, BTreeSet};

use super::report::{Entry, Status};
use super::source::{MigrateError, SourceObject, string_list, string_map};
use super::yaml::{Node, Value};

/// What an unread field becomes in the report.
pub const NO_EQUIVALENT: &str = "Sluice has no equivalent";

/// A node and its path (`spec.match[0].select`) and line in the source.
#[derive(Clone, Debug)]
pub struct At<'a> {
    pub node: &'a Node,
    pub path: String,
    pub line: usize,
}

impl<'a> At<'a> {
    /// The object's `spec`.
    pub fn spec(object: &'a SourceObject) -> At<'a> {
        At {
            node: &object.spec,
            path: "spec".to_owned(),
            line: object.spec_line,
        }
    }

    /// The child `key`, unless absent or null.
    pub fn field(&self, key: &str) -> Option<At<'a>> {
        let entry = self.node.entry(key)?;
        (!entry.node.is_null()).then(|| At {
            node: &entry.node,
            path: format!("{}.{key}", self.path),
            line: entry.line,
        })
    }
}

/// Collects the report entries and input errors of one source object.
pub struct Fields<'a> {
    pub object: &'a SourceObject,
    pub entries: Vec<Entry>,
    pub errors: Vec<MigrateError>,
    /// Entries about a whole object or section (defaults that differ, and the like): they
    /// do not count as reading the fields below their path.
    notes: BTreeSet<usize>,
}

impl<'a> Fields<'a> {
    pub fn new(object: &'a SourceObject) -> Self {
        Self {
            object,
            entries: Vec::new(),
            errors: Vec::new(),
            notes: BTreeSet::new(),
        }
    }

    /// An input error at `at`: the migration stops, naming file, object and field.
    pub fn error(&mut self, at: &At<'_>, message: impl Into<String>) {
        self.errors.push(MigrateError {
            file: self.object.file.clone(),
            document: self.object.document,
            line: if at.line == 0 {
                self.object.line
            } else {
                at.line
            },
            object: Some(self.object.id.to_string()),
            field: Some(at.path.clone()),
            message: message.into(),
        });
    }

    fn wrong_type(&mut self, at: &At<'_>, expected: &str) {
        let message = format!("must be {expected}, not {}", at.node.type_name());
        self.error(at, message);
    }

    /// The items of a list.
    pub fn items<'n>(&mut self, at: &At<'n>) -> Vec<At<'n>> {
        match &at.node.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(index, node)| At {
                    node,
                    path: format!("{}[{index}]", at.path),
                    line: if node.line == 0 { at.line } else { node.line },
                })
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                self.wrong_type(at, "a list");
                Vec::new()
            }
        }
    }

    /// The entries of a mapping, each as a field.
    pub fn entries_of<'n>(&mut self, at: &At<'n>) -> Vec<(String, At<'n>)> {
        match &at.node.value {
            Value::Map(entries) => entries
                .iter()
                .filter(|e| !e.node.is_null())
                .map(|e| {
                    (
                        e.key.clone(),
                        At {
                            node: &e.node,
                            path: format!("{}.{}", at.path, e.key),
                            line: e.line,
                        },
                    )
                })
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                self.wrong_type(at, "a mapping");
                Vec::new()
            }
        }
    }

    /// A scalar as text.
    pub fn string(&mut self, at: &At<'_>) -> Option<String> {
        let text = at.node.scalar_text();
        if text.is_none() {
            self.wrong_type(at, "a string");
        }
        text
    }

    pub fn strings(&mut self, at: &At<'_>) -> Vec<String> {
        string_list(at.node).unwrap_or_else(|| {
            self.wrong_type(at, "a list of strings");
            Vec::new()
        })
    }

    pub fn string_map(&mut self, at: &At<'_>) -> BTreeMap<String, String> {
        string_map(at.node).unwrap_or_else(|| {
            self.wrong_type(at, "a mapping of strings");
            BTreeMap::new()
        })
    }

    /// A boolean; `"true"`/`"false"` strings count, as some logging-operator fields are strings.
    pub fn bool(&mut self, at: &At<'_>) -> Option<bool> {
        match &at.node.value {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => {
                self.wrong_type(at, "a boolean");
                None
            }
        }
    }

    /// An integer; numeric strings count.
    pub fn int(&mut self, at: &At<'_>) -> Option<i64> {
        match &at.node.value {
            Value::Int(i) => Some(*i),
            Value::String(s) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
            _ => {
                self.wrong_type(at, "an integer");
                None
            }
        }
    }

    /// The string at `parent.key` (`None` when absent), reported converted to `target`.
    pub fn carry_string(
        &mut self,
        parent: &At<'_>,
        key: &str,
        target: impl Into<String>,
    ) -> Option<String> {
        let at = parent.field(key)?;
        let value = self.string(&at);
        self.converted(&at, target);
        value
    }

    /// The integer at `parent.key`, reported converted to `target`.
    pub fn carry_int(
        &mut self,
        parent: &At<'_>,
        key: &str,
        target: impl Into<String>,
    ) -> Option<i64> {
        let at = parent.field(key)?;
        let value = self.int(&at);
        self.converted(&at, target);
        value
    }

    /// The boolean at `parent.key`, reported converted to `target`.
    pub fn carry_bool(
        &mut self,
        parent: &At<'_>,
        key: &str,
        target: impl Into<String>,
    ) -> Option<bool> {
        let at = parent.field(key)?;
        let value = self.bool(&at);
        self.converted(&at, target);
        value
    }

    fn push(&mut self, status: Status, at: &At<'_>, target: Option<String>, message: String) {
        self.entries.push(Entry {
            status,
            field: at.path.clone(),
            line: at.line,
            target,
            message,
        });
    }

    pub fn converted(&mut self, at: &At<'_>, target: impl Into<String>) {
        self.push(Status::Converted, at, Some(target.into()), String::new());
    }

    /// Converted with the same meaning, with something worth knowing.
    pub fn converted_note(
        &mut self,
        at: &At<'_>,
        target: impl Into<String>,
        note: impl Into<String>,
    ) {
        self.push(Status::Converted, at, Some(target.into()), note.into());
    }

    pub fn changed(&mut self, at: &At<'_>, target: Option<String>, why: impl Into<String>) {
        self.push(Status::Changed, at, target, why.into());
    }

    pub fn lost(&mut self, at: &At<'_>, why: impl Into<String>) {
        self.push(Status::NotConverted, at, None, why.into());
    }

    pub fn not_needed(&mut self, at: &At<'_>, why: impl Into<String>) {
        self.push(Status::NotNeeded, at, None, why.into());
    }

    pub fn pending(&mut self, at: &At<'_>, target: Option<String>, what: impl Into<String>) {
        self.push(Status::ToDo, at, target, what.into());
    }

    /// An entry about the object as a whole (path `spec` or similar), at the object's line.
    pub fn about_object(
        &mut self,
        status: Status,
        field: &str,
        target: Option<String>,
        message: impl Into<String>,
    ) {
        self.notes.insert(self.entries.len());
        self.entries.push(Entry {
            status,
            field: field.to_owned(),
            line: self.object.spec_line,
            target,
            message: message.into(),
        });
    }

    /// An entry about a section as a whole (a default that differs, say); the fields
    /// below it are still reported one by one.
    pub fn note(
        &mut self,
        status: Status,
        at: &At<'_>,
        target: Option<String>,
        message: impl Into<String>,
    ) {
        self.notes.insert(self.entries.len());
        self.push(status, at, target, message.into());
    }

    /// Reports every field below `root` that no entry covers as not converted: a subtree
    /// nobody read at all as one entry, a partly read one field by field.
    pub fn sweep(&mut self, root: &At<'_>) {
        let covered: BTreeSet<String> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(index, _)| !self.notes.contains(index))
            .map(|(_, e)| e.field.clone())
            .collect();
        let mut lost = Vec::new();
        sweep(root, &covered, &mut lost);
        for at in lost {
            self.lost(&at, NO_EQUIVALENT);
        }
    }
}

fn sweep<'a>(at: &At<'a>, covered: &BTreeSet<String>, lost: &mut Vec<At<'a>>) {
    if covered.contains(&at.path) || is_empty(at.node) {
        return;
    }
    let below = |p: &String| {
        p.len() > at.path.len()
            && p.starts_with(&at.path)
            && matches!(p.as_bytes()[at.path.len()], b'.' | b'[')
    };
    if !covered.iter().any(below) {
        lost.push(at.clone());
        return;
    }
    match &at.node.value {
        Value::Map(entries) => {
            for entry in entries {
                let child = At {
                    node: &entry.node,
                    path: format!("{}.{}", at.path, entry.key),
                    line: entry.line,
                };
                sweep(&child, covered, lost);
            }
        }
        Value::Seq(items) => {
            for (index, node) in items.iter().enumerate() {
                let child = At {
                    node,
                    path: format!("{}[{index}]", at.path),
                    line: if node.line == 0 { at.line } else { node.line },
                };
                sweep(&child, covered, lost);
            }
        }
        _ => lost.push(at.clone()),
    }
}

/// Nothing written that could be lost: null, `{}`, `[]`, `""`.
fn is_empty(node: &Node) -> bool {
    match &node.value {
        Value::Null => true,
        Value::Map(entries) => entries.iter().all(|e| is_empty(&e.node)),
        Value::Seq(items) => items.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}
