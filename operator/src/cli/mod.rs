//! The `sluice` command line.

pub mod run;

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
    /// Print the CustomResourceDefinitions, or write them into a directory.
    Crds {
        /// Write one file per CRD into this directory instead of printing a YAML stream.
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
    /// Run the operator against a cluster.
    Run(run::RunArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds { out_dir } => crds(out_dir.as_deref()),
        Command::Run(args) => run::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
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

fn crds(out_dir: Option<&std::path::Path>) -> Result<(), String> {
    for crd in crate::api::crds() {
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
