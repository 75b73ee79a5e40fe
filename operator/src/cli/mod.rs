//! The `sluice` command line.

pub mod api_docs;
pub mod explain;
pub mod input;
pub mod migrate;
pub mod reload;
pub mod render;
pub mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Secure logging pipelines for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print every Kubernetes object the operator would create for the given resources.
    Render(render::RenderArgs),
    /// Show which flows take a log record with the given metadata, and where it goes.
    Explain(ExplainArgs),
    /// Convert kube-logging/logging-operator objects into Sluice objects, with a report of
    /// every field and a check that records are routed the same way (docs/migrate.md).
    Migrate(migrate::MigrateArgs),
    /// Print the CustomResourceDefinitions, or write them into a directory.
    Crds {
        /// Write one file per CRD into this directory instead of printing a YAML stream.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Also write the generated API reference (docs/api.md) to this file.
        #[arg(long)]
        api_docs: Option<PathBuf>,
    },
    /// Run the operator against a cluster.
    Run(run::RunArgs),
    /// Check and install config bundles for fluentd or fluent-bit, and have them reload
    /// (runs inside every data-plane pod; docs/architecture.md, "Config reload").
    Reload(reload::ReloadArgs),
    /// Copy this binary to a path (how the reloader gets into the data-plane images).
    CopyBinary { destination: PathBuf },
}

/// Options of `sluice explain`.
#[derive(clap::Args, Debug)]
struct ExplainArgs {
    /// Files or directories of YAML (Sluice resources, plus Namespaces for their labels).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    /// The record's namespace.
    #[arg(long)]
    namespace: String,
    /// The pod's labels, as `k=v,k2=v2`.
    #[arg(long, default_value = "")]
    labels: String,
    /// The node the pod runs on.
    #[arg(long, default_value = "")]
    host: String,
    /// The container name.
    #[arg(long, default_value = "")]
    container: String,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Migrate(args) = &cli.command {
        return match migrate::run(args) {
            Ok(migrate::Outcome::Complete) => ExitCode::SUCCESS,
            // Written, but lossy: a distinct code, so scripts can tell it from bad input.
            Ok(migrate::Outcome::Partial) => ExitCode::from(2),
            Err(errors) => {
                for error in &errors {
                    eprintln!("error: {error}");
                }
                ExitCode::FAILURE
            }
        };
    }
    let result = match cli.command {
        Command::Render(args) => render::render(&args).map(|rendered| {
            for warning in &rendered.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", rendered.yaml);
        }),
        Command::Explain(args) => run_explain(&args).map(|text| print!("{text}")),
        Command::Crds { out_dir, api_docs } => {
            crds(out_dir.as_deref(), api_docs.as_deref()).map_err(|e| vec![e])
        }
        Command::Run(args) => run::run(args).map_err(|e| vec![e]),
        Command::Reload(args) => reload::reload(args).map_err(|e| vec![e]),
        Command::CopyBinary { destination } => {
            reload::copy_binary(&destination).map_err(|e| vec![e])
        }
        Command::Migrate(_) => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(errors) => {
            for error in &errors {
                eprintln!("error: {error}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run_explain(args: &ExplainArgs) -> Result<String, Vec<String>> {
    let loaded = input::load(&args.files)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let labels = explain::parse_labels(&args.labels).map_err(|e| vec![format!("--labels: {e}")])?;
    let namespace_labels = loaded
        .objects
        .namespaces
        .iter()
        .find(|ns| ns.metadata.name.as_deref() == Some(args.namespace.as_str()))
        .and_then(|ns| ns.metadata.labels.clone())
        .unwrap_or_default();
    let record = crate::routing::Record {
        namespace: args.namespace.clone(),
        namespace_labels,
        labels,
        host: args.host.clone(),
        container: args.container.clone(),
    };
    let resolution = crate::model::resolve(&loaded.objects.inventory());
    for warning in render::problems_as_messages(&loaded, &resolution, |_| true) {
        eprintln!("warning: {warning}");
    }
    Ok(explain::explain(&resolution.pipelines, &record))
}

/// File name of each CRD in `crds/`.
pub fn crd_file_name(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// The YAML text of one CRD, exactly as committed in `crds/`.
pub fn crd_yaml(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Result<String, String> {
    serde_saphyr::to_string(crd)
        .map(|yaml| format!("---\n{yaml}"))
        .map_err(|e| e.to_string())
}

/// `crds/Kustomization`: lets deploy/ (and any overlay) include the CRDs, since kustomize
/// loads files only below its root but accepts another kustomization directory. Without a
/// `.yaml` extension, so `kubectl apply -f crds/` still applies the CRDs alone.
pub fn crds_kustomization(
    crds: &[k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition],
) -> String {
    let mut files: Vec<String> = crds.iter().map(crd_file_name).collect();
    files.sort();
    let mut text = String::from(
        "# Generated by `sluice crds --out-dir crds`: the CRDs as a kustomize resource.\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for file in files {
        text.push_str(&format!("  - {file}\n"));
    }
    text
}

fn crds(
    out_dir: Option<&std::path::Path>,
    api_docs: Option<&std::path::Path>,
) -> Result<(), String> {
    if let Some(path) = api_docs {
        std::fs::write(path, api_docs::markdown(&crate::api::crds()))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let crds = crate::api::crds();
    if let Some(dir) = out_dir {
        let path = dir.join("Kustomization");
        std::fs::write(&path, crds_kustomization(&crds))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    for crd in crds {
        let yaml = crd_yaml(&crd)?;
        match out_dir {
            Some(dir) => {
                let path = dir.join(crd_file_name(&crd));
                std::fs::write(&path, yaml).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            None => print!("{yaml}"),
        }
    }
    Ok(())
}
