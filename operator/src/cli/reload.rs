//! `sluice reload` (the config reloader in every data-plane pod) and `sluice copy-binary`
//! (how the reloader gets into the data-plane image).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::reload::{Method, Reloader, Settings};

/// Options of `sluice reload`.
#[derive(clap::Args, Debug)]
pub struct ReloadArgs {
    /// Prepare the active directory once and exit (the init container): the candidate if the
    /// check accepts it, else the accepted bundle; exit 1 if neither is usable.
    #[arg(long)]
    pub once: bool,
    /// The candidate bundle (projected volume of the candidate Secrets).
    #[arg(long)]
    pub candidate: PathBuf,
    /// The accepted bundle (projected volume of the accepted Secrets).
    #[arg(long)]
    pub accepted: PathBuf,
    /// Writable directory the data-plane process reads `current/<entry>` from.
    #[arg(long)]
    pub active: PathBuf,
    /// The bundle's entry file.
    #[arg(long)]
    pub entry: String,
    /// The data-plane process's reload endpoint.
    #[arg(long)]
    pub reload_url: String,
    #[arg(long, value_enum, default_value_t = Method::Post, ignore_case = true)]
    pub reload_method: Method,
    /// Address of `/status` and `/healthz`.
    #[arg(long, default_value = "0.0.0.0:8099")]
    pub listen: SocketAddr,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub poll_interval: Duration,
    /// How long the check may run before it is killed and counts as a rejection.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
    pub validate_timeout: Duration,
    /// The buffer volume, whose chunks a drain waits for.
    #[arg(long)]
    pub buffer_dir: Option<PathBuf>,
    /// Called while draining to flush every buffer now.
    #[arg(long)]
    pub flush_url: Option<String>,
    /// How long a buffer a new revision drops must stay empty and unwritten before the
    /// revision is loaded (agents may still send records for a removed flow until then).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub dropped_buffer_quiet: Duration,
    /// Where `--once` writes why it failed, for `kubectl describe pod`.
    #[arg(long, default_value = "/dev/termination-log")]
    pub termination_log: PathBuf,
    /// The data-plane binary's check; `{dir}` is the revision directory.
    #[arg(last = true, required = true, num_args = 1..)]
    pub validate: Vec<String>,
}

fn settings(args: &ReloadArgs) -> Settings {
    Settings {
        candidate: args.candidate.clone(),
        accepted: args.accepted.clone(),
        active: args.active.clone(),
        entry: args.entry.clone(),
        validate: args.validate.clone(),
        validate_timeout: args.validate_timeout,
        reload_url: args.reload_url.clone(),
        reload_method: args.reload_method,
        termination_log: Some(args.termination_log.clone()),
        buffer_dir: args.buffer_dir.clone(),
        flush_url: args.flush_url.clone(),
        dropped_buffer_quiet: args.dropped_buffer_quiet,
    }
}

pub fn reload(args: ReloadArgs) -> Result<(), String> {
    super::run::init_tracing(super::run::LogFormat::Plain);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let mut reloader = Reloader::new(settings(&args));
        if args.once {
            let revision = reloader.prepare().await.map_err(|e| e.to_string())?;
            tracing::info!(
                revision = crate::bundle::short_revision(&revision),
                "configuration ready"
            );
            return Ok(());
        }
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(crate::reload::serve_status(
            listener,
            reloader.status_handle(),
            crate::controller::until_true(stopped.clone()),
        ));
        tokio::spawn(async move {
            crate::controller::termination().await;
            let _ = stop.send(true);
        });
        crate::reload::watch(
            reloader,
            args.poll_interval,
            crate::controller::until_true(stopped),
        )
        .await;
        let _ = server.await;
        Ok(())
    })
}

/// Copies this executable to `destination` (write, chmod, rename): the operator image has no
/// shell or `cp`, and the data-plane images run the copy.
pub fn copy_binary(destination: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let source = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let temporary = destination.with_extension("tmp");
    std::fs::copy(&source, &temporary).map_err(|e| {
        format!(
            "copying {} to {}: {e}",
            source.display(),
            temporary.display()
        )
    })?;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, destination).map_err(|e| format!("{}: {e}", destination.display()))
}
