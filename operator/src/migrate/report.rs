//! What `sluice migrate` did with every logging-operator object and field, and whether the
//! converted objects route every sampled record where logging-operator did.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use super::source::SourceId;

/// What became of one source field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Carried over with the same meaning.
    Converted,
    /// Carried over, but it means something different in Sluice (the message says what).
    Changed,
    /// Lost: Sluice has no equivalent, or refuses it. Makes `sluice migrate` exit non-zero
    /// unless `--allow-partial`.
    NotConverted,
    /// Nothing to carry: it had no effect in logging-operator, or Sluice does it by itself.
    NotNeeded,
    /// Carried over, but something must exist in the cluster before switching (a Secret).
    ToDo,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Converted => "converted",
            Status::Changed => "changed",
            Status::NotConverted => "NOT CONVERTED",
            Status::NotNeeded => "not needed",
            Status::ToDo => "to do",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub status: Status,
    /// Source field path, such as `spec.match[0].select.labels`.
    pub field: String,
    /// 1-based line in the source file; 0 when unknown (objects read from a cluster).
    pub line: usize,
    /// Sluice field it became, when it became one.
    pub target: Option<String>,
    pub message: String,
}

/// Everything about one source object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectReport {
    pub source: SourceId,
    pub file: String,
    pub line: usize,
    /// The Sluice objects it became (`Kind namespace/name`).
    pub targets: Vec<String>,
    pub entries: Vec<Entry>,
}

/// Where a record goes: each flow that takes it, with the outputs it sends to, named by the
/// logging-operator objects they came from. Empty: dropped (or never collected).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Destination(pub BTreeMap<String, BTreeSet<String>>);

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("nowhere (dropped)");
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(flow, outputs)| {
                if outputs.is_empty() {
                    format!("{flow} -> no output")
                } else {
                    let outputs: Vec<&str> = outputs.iter().map(String::as_str).collect();
                    format!("{flow} -> {}", outputs.join(", "))
                }
            })
            .collect();
        f.write_str(&parts.join("; "))
    }
}

/// Records that logging-operator and Sluice send to different places: one class per pair of
/// destinations, with the first record found as the example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    pub example: String,
    pub records: usize,
    pub incumbent: Destination,
    pub sluice: Destination,
}

/// The routing comparison of one Logging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingCheck {
    /// The logging-operator Logging (or "(no Logging in the input)").
    pub logging: String,
    pub records: usize,
    pub namespaces: usize,
    pub divergences: Vec<Divergence>,
}

/// The whole report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub objects: Vec<ObjectReport>,
    pub checks: Vec<RoutingCheck>,
    /// Documents that were neither logging-operator objects nor Namespaces or Secrets.
    pub skipped_documents: usize,
    /// Facts about the migration as a whole.
    pub notes: Vec<String>,
}

impl Report {
    pub fn count(&self, status: Status) -> usize {
        self.objects
            .iter()
            .flat_map(|o| &o.entries)
            .filter(|e| e.status == status)
            .count()
    }

    /// Whether converting loses anything: a field not carried over, or a record class
    /// routed elsewhere.
    pub fn loses_anything(&self) -> bool {
        self.count(Status::NotConverted) > 0
            || self.checks.iter().any(|c| !c.divergences.is_empty())
    }

    /// The report as text: a summary, then every object and field.
    pub fn text(&self) -> String {
        let mut out = String::from("# sluice migrate report\n");
        let targets: usize = self.objects.iter().map(|o| o.targets.len()).sum();
        let _ = writeln!(
            out,
            "objects: {} logging-operator objects read, {targets} Sluice objects written",
            self.objects.len()
        );
        let statuses = [
            Status::Converted,
            Status::Changed,
            Status::NotConverted,
            Status::NotNeeded,
            Status::ToDo,
        ];
        let counts: Vec<String> = statuses
            .iter()
            .map(|s| format!("{} {}", self.count(*s), s.label().to_lowercase()))
            .collect();
        let _ = writeln!(out, "fields: {}", counts.join(", "));
        if self.skipped_documents > 0 {
            let _ = writeln!(
                out,
                "skipped: {} documents that are not logging-operator objects, Namespaces or Secrets",
                self.skipped_documents
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        for check in &self.checks {
            let differing: usize = check.divergences.iter().map(|d| d.records).sum();
            let _ = writeln!(
                out,
                "routing: {}: {} sample records over {} namespaces, {}",
                check.logging,
                check.records,
                check.namespaces,
                if differing == 0 {
                    "every one routed to the same flows and outputs".to_owned()
                } else {
                    format!(
                        "{differing} routed differently, in {} class{} (listed below)",
                        check.divergences.len(),
                        if check.divergences.len() == 1 {
                            ""
                        } else {
                            "es"
                        }
                    )
                }
            );
        }
        let lost = self.count(Status::NotConverted);
        let classes: usize = self.checks.iter().map(|c| c.divergences.len()).sum();
        let result = if self.loses_anything() {
            format!(
                "{lost} field(s) NOT CONVERTED, {classes} record class(es) routed differently (DIFFERS): `sluice migrate` exits 2 unless --allow-partial"
            )
        } else {
            "nothing is lost".to_owned()
        };
        let _ = writeln!(out, "result: {result}");
        for check in &self.checks {
            for d in &check.divergences {
                let _ = writeln!(
                    out,
                    "\nDIFFERS ({}): {} ({} records of this class)\n  logging-operator: {}\n  sluice:           {}",
                    check.logging, d.example, d.records, d.incumbent, d.sluice
                );
            }
        }
        for object in &self.objects {
            let place = place(&object.file, object.line);
            let became = if object.targets.is_empty() {
                "not converted".to_owned()
            } else {
                format!("-> {}", object.targets.join(", "))
            };
            let _ = writeln!(out, "\n{} ({place}) {became}", object.source);
            for entry in &object.entries {
                let _ = write!(
                    out,
                    "  {:<16} {:<13} {}",
                    place_short(&object.file, entry.line),
                    entry.status.label(),
                    entry.field
                );
                if let Some(target) = &entry.target {
                    let _ = write!(out, " -> {target}");
                }
                if !entry.message.is_empty() {
                    let _ = write!(out, ": {}", entry.message);
                }
                out.push('\n');
            }
        }
        out
    }
}

fn place(file: &str, line: usize) -> String {
    if line == 0 {
        file.to_owned()
    } else {
        format!("{file}:{line}")
    }
}

/// The file's own name and the line, to keep entry lines short.
fn place_short(file: &str, line: usize) -> String {
    let name = file.rsplit('/').next().unwrap_or(file);
    place(name, line)
}
