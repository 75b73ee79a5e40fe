//! `sluice migrate`: reads logging-operator objects from files or, read-only, from a cluster,
//! converts them (`crate::migrate`, pure) and writes the Sluice objects and the report.

use std::path::{Path, PathBuf};

use super::input::{self, InputError, Origin};
use crate::migrate::{self, Document, INCUMBENT_API_VERSION, MigrateError, Migration};

/// File the report is written to in `--out`.
pub const REPORT_FILE: &str = "migration-report.txt";

/// Options of `sluice migrate`.
#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// Files or directories of logging-operator YAML (`logging.banzaicloud.io/v1beta1`), plus
    /// the Namespaces (for their labels) and, optionally, Secrets holding user names.
    #[arg(short = 'f', long = "filename", num_args = 1.., required_unless_present = "kubeconfig")]
    pub files: Vec<PathBuf>,
    /// Read the objects from the cluster of this kubeconfig instead (read-only: lists
    /// logging-operator's kinds and Namespaces, never Secrets).
    #[arg(long, conflicts_with = "files")]
    pub kubeconfig: Option<PathBuf>,
    /// Write one file per namespace (`_cluster.yaml` for cluster-scoped objects) and the
    /// report (`migration-report.txt`) into this directory. Without it the objects go to
    /// standard output and the report to standard error.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Exit 0 even when a field is not converted or a record would be routed differently.
    #[arg(long)]
    pub allow_partial: bool,
}

/// What the command ends with.
pub enum Outcome {
    /// Everything carried over (or `--allow-partial`).
    Complete,
    /// Written, but something is lost or routed differently (see the report).
    Partial,
}

/// Runs `sluice migrate`. Input errors name file, object and field, and nothing is written.
pub fn run(args: &MigrateArgs) -> Result<Outcome, Vec<String>> {
    let documents = match &args.kubeconfig {
        Some(path) => read_cluster(path)?,
        None => read_files(&args.files).map_err(to_messages)?,
    };
    let migration = migrate::migrate(&documents).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| input_error(e).to_string())
            .collect::<Vec<_>>()
    })?;
    write(&migration, args.out.as_deref())?;
    if migration.report.loses_anything() && !args.allow_partial {
        Ok(Outcome::Partial)
    } else {
        Ok(Outcome::Complete)
    }
}

fn to_messages(errors: Vec<InputError>) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

fn input_error(error: MigrateError) -> InputError {
    InputError {
        origin: Some(Origin {
            file: PathBuf::from(error.file),
            document: error.document,
            line: error.line,
        }),
        object: error.object,
        field: error.field,
        message: error.message,
    }
}

/// Every document of the given files and directories, with its place.
pub fn read_files(paths: &[PathBuf]) -> Result<Vec<Document>, Vec<InputError>> {
    let (files, mut errors) = input::yaml_files(paths);
    let mut documents = Vec::new();
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                errors.push(input::file_error(file, format!("cannot read: {e}")));
                continue;
            }
        };
        for (index, (line, chunk)) in input::split_documents(&text).into_iter().enumerate() {
            let origin = Origin {
                file: file.clone(),
                document: index + 1,
                line,
            };
            match migrate::yaml::parse(&chunk, line) {
                Ok(root) => documents.push(Document {
                    file: file.display().to_string(),
                    index: index + 1,
                    line,
                    root,
                }),
                Err(e) => errors.push(input::syntax_error(origin, &e)),
            }
        }
    }
    if errors.is_empty() && documents.is_empty() {
        errors.push(InputError {
            origin: None,
            object: None,
            field: None,
            message: "no YAML documents found".to_owned(),
        });
    }
    if errors.is_empty() {
        Ok(documents)
    } else {
        Err(errors)
    }
}

/// logging-operator's objects and the Namespaces of the cluster (listed read-only by the
/// controller module, the only code that talks to the API server).
fn read_cluster(kubeconfig: &Path) -> Result<Vec<Document>, Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| vec![format!("starting the runtime: {e}")])?;
    let values = runtime
        .block_on(crate::controller::incumbent::list(
            kubeconfig,
            INCUMBENT_API_VERSION,
        ))
        .map_err(|e| vec![e])?;
    // Objects of a cluster have no file: the report names them by where they came from.
    let source = "cluster".to_owned();
    Ok(values
        .iter()
        .enumerate()
        .map(|(index, value)| Document {
            file: source.clone(),
            index: index + 1,
            line: 0,
            root: migrate::yaml::from_json(value),
        })
        .collect())
}

/// Writes the objects and the report into `out`, or to standard output and error.
fn write(migration: &Migration, out: Option<&Path>) -> Result<(), Vec<String>> {
    let files = migration.files().map_err(|e| vec![e])?;
    let report = migration.report.text();
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| vec![format!("{}: {e}", dir.display())])?;
            for file in &files {
                let path = dir.join(&file.name);
                std::fs::write(&path, &file.content)
                    .map_err(|e| vec![format!("{}: {e}", path.display())])?;
            }
            let path = dir.join(REPORT_FILE);
            std::fs::write(&path, &report).map_err(|e| vec![format!("{}: {e}", path.display())])?;
            eprint!("{}", summary(&report));
            eprintln!(
                "wrote {} files and {} to {}",
                files.len(),
                REPORT_FILE,
                dir.display()
            );
        }
        None => {
            for file in &files {
                print!("# file: {}\n{}", file.name, file.content);
            }
            eprint!("{report}");
        }
    }
    Ok(())
}

/// The report's summary lines (before the first object).
fn summary(report: &str) -> String {
    report
        .split("\n\n")
        .next()
        .map(|head| format!("{head}\n"))
        .unwrap_or_default()
}
