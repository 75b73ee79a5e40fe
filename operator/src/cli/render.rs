//! `sluice render`: everything the operator would create for the given resources, offline.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Secret;

use super::input::{self, InputError, Loaded};
use crate::build;
use crate::model::{self, Problem, Resolution};
use crate::pki::{self, PkiRequest};

/// Options of `sluice render`.
#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// Files or directories of YAML (Sluice resources, plus referenced Secrets and Namespaces).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// A YAML stream (such as an earlier `sluice render` output) whose Secrets are reused as
    /// existing certificate material, so the output is identical for identical input.
    #[arg(long)]
    pub pki_from: Option<PathBuf>,
    /// The instant certificates are planned for (RFC 3339). Default: now.
    #[arg(long)]
    pub now: Option<jiff::Timestamp>,
}

/// What `render` produced: the YAML stream, and warnings that did not stop it.
#[derive(Debug, Default)]
pub struct Rendered {
    pub yaml: String,
    pub warnings: Vec<String>,
}

/// Renders to a YAML stream, or every error found.
pub fn render(args: &RenderArgs) -> Result<Rendered, Vec<String>> {
    let loaded = input::load(&args.files).map_err(to_messages)?;
    let existing = match &args.pki_from {
        Some(path) => previous_secrets(path)?,
        None => Vec::new(),
    };
    let now = args.now.unwrap_or_else(jiff::Timestamp::now);
    render_loaded(&loaded, &existing, now)
}

fn to_messages(errors: Vec<InputError>) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

/// Secrets from a previous render (other documents are ignored).
fn previous_secrets(path: &std::path::Path) -> Result<Vec<Secret>, Vec<String>> {
    let loaded = input::load_secrets(path).map_err(to_messages)?;
    Ok(loaded)
}

/// The core of `render`, separated from argument handling for tests.
pub fn render_loaded(
    loaded: &Loaded,
    previous: &[Secret],
    now: jiff::Timestamp,
) -> Result<Rendered, Vec<String>> {
    let resolution = model::resolve(&loaded.objects.inventory());
    let mut errors = problems_as_messages(loaded, &resolution, |p| !p.is_warning());
    if resolution.pipelines.is_empty() && errors.is_empty() {
        errors.push(
            "no Logging found: nothing to render (a Logging is the root of every pipeline)"
                .to_owned(),
        );
    }
    let mut out = String::new();
    for pipeline in &resolution.pipelines {
        let namespace = &pipeline.names.control_namespace;
        let existing: BTreeMap<String, Secret> = previous
            .iter()
            .chain(&loaded.objects.secrets)
            .filter(|s| s.metadata.namespace.as_deref() == Some(namespace.as_str()))
            .filter_map(|s| s.metadata.name.clone().map(|name| (name, s.clone())))
            .collect();
        let plan = match pki::plan(&PkiRequest {
            names: &pipeline.names,
            tls: &pipeline.spec.tls_or_default(),
            now,
            existing: &existing,
            // Offline there are no pods to wait for.
            rollout: pki::Rollout::Unobserved,
        }) {
            Ok(plan) => plan,
            Err(e) => {
                errors.push(format!("Logging {}: {e}", pipeline.logging));
                continue;
            }
        };
        for problem in &plan.problems {
            errors.push(format!("Logging {}: {problem}", pipeline.logging));
        }
        let children = match build::objects(pipeline, &plan) {
            Ok(children) => children,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        for child in children {
            match serde_saphyr::to_string(&child.object) {
                Ok(yaml) => {
                    out.push_str("---\n");
                    out.push_str(&yaml);
                }
                Err(e) => errors.push(format!(
                    "cannot serialize {:?} {:?}: {e}",
                    child.kind, child.object.metadata.name
                )),
            }
        }
    }
    if errors.is_empty() {
        Ok(Rendered {
            yaml: out,
            warnings: problems_as_messages(loaded, &resolution, Problem::is_warning),
        })
    } else {
        Err(errors)
    }
}

/// The problems the model found that `which` selects, prefixed with where the object came
/// from.
pub fn problems_as_messages(
    loaded: &Loaded,
    resolution: &Resolution,
    which: impl Fn(&Problem) -> bool,
) -> Vec<String> {
    let mut messages = Vec::new();
    for (key, problems) in &resolution.problems {
        let origin = loaded
            .origins
            .get(key)
            .map(|o| format!("{o}: "))
            .unwrap_or_default();
        for problem in problems.iter().filter(|p| which(p)) {
            messages.push(format!("{origin}{key}: {problem}"));
        }
    }
    messages
}
