//! `sluice run`: the operator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::controller::{self, Options, Settings, leader::LeaseSettings};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Kubeconfig to use. Default: in-cluster configuration, else `KUBECONFIG` or `~/.kube/config`.
    #[arg(long, env = "SLUICE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Address of the `/metrics`, `/healthz` and `/readyz` server.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Log format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// Compete for a Lease and reconcile only while holding it (run two replicas with this).
    #[arg(long, env = "SLUICE_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the Lease. Default: the pod's namespace (`POD_NAMESPACE`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "sluice-system")]
    pub lease_namespace: String,
    /// Name of the Lease.
    #[arg(long, default_value = "sluice-operator")]
    pub lease_name: String,
    /// Identity in the Lease and in Events. Default: the pod name (`POD_NAME`), else the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Namespaces Loggings may name as `controlNamespace` (comma-separated). Sluice watches
    /// and writes Secrets only there, so its RBAC needs no cluster-wide Secret list/watch.
    /// Empty: any namespace, which needs the cluster-wide Secret binding.
    #[arg(long, env = "SLUICE_CONTROL_NAMESPACES", value_delimiter = ',')]
    pub control_namespaces: Vec<String>,
    /// Loggings reconciled at the same time.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u16,
    /// Quiet period after a change before reconciling, so a burst of edits is handled once.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub debounce: Duration,
    /// Reconcile every Logging at least this often, to pick up changed user Secrets (which
    /// are read, not watched).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    pub resync_interval: Duration,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

pub fn run(args: RunArgs) -> Result<(), String> {
    init_tracing(args.log_format);
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "sluice".to_owned());
    let options = Options {
        kubeconfig: args.kubeconfig,
        listen: args.listen,
        lease: args.leader_elect.then(|| LeaseSettings {
            namespace: args.lease_namespace,
            name: args.lease_name,
            identity: identity.clone(),
        }),
        identity,
        control_namespaces: args.control_namespaces,
        concurrency: args.concurrency,
        debounce: args.debounce,
        settings: Settings {
            resync: args.resync_interval,
            ..Settings::default()
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime
        .block_on(controller::run(options))
        .map_err(|e| e.to_string())
}
