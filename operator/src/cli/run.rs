//! `sluice run`: the operator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::controller::{self, ControlNamespaces, Options, Settings, leader::LeaseSettings};

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
    /// The namespace the operator runs in; the default of `--lease-namespace` and
    /// `--control-namespaces`. Set from the pod's namespace (`POD_NAMESPACE`, downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "sluice-system")]
    pub namespace: String,
    /// Namespace of the Lease. Default: `--namespace`.
    #[arg(long)]
    pub lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, default_value = "sluice-operator")]
    pub lease_name: String,
    /// Identity in the Lease and in Events. Default: the pod name (`POD_NAME`), else the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Namespaces Loggings may name as `controlNamespace` (comma-separated). Sluice watches
    /// and writes Secrets only there (each needs a RoleBinding), so its RBAC needs no
    /// cluster-wide Secret list/watch. Default: `--namespace`. `*`: any namespace, which
    /// needs the Secret ClusterRole bound cluster-wide.
    #[arg(long, env = "SLUICE_CONTROL_NAMESPACES", value_delimiter = ',')]
    pub control_namespaces: Vec<String>,
    /// Loggings reconciled at the same time.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u16,
    /// Adaptive debounce: a change after this long without changes is reconciled at once;
    /// changes closer together than this are a burst, reconciled once they pause this long
    /// (at most 8 times this after the burst resumed).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "200ms")]
    pub debounce: Duration,
    /// Reconcile every Logging at least this often, to pick up changed user Secrets (which
    /// are read, not watched).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    pub resync_interval: Duration,
    /// Object status writes in flight at once. They are written apart from the reconciles,
    /// and none starts while a reconcile applies configuration.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub status_concurrency: u16,
    /// How long one status write may take before it counts as failed and is tried again
    /// after a backoff.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub status_write_timeout: Duration,
}

/// The log subscriber. Colour codes only when `ansi` (stdout is a terminal): in a file or a
/// log collector they are noise.
fn subscriber<W>(
    format: LogFormat,
    filter: tracing_subscriber::EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Plain => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
    }
}

pub(crate) fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::stdout().is_terminal();
    let _ = subscriber(format, filter, std::io::stdout, ansi).try_init();
}

/// What `--control-namespaces` means: nothing given is the operator's own namespace, the
/// only one a default install grants Secret access in; `*` alone is any namespace.
pub fn control_namespaces(given: &[String], own: &str) -> Result<ControlNamespaces, String> {
    let mut names: Vec<String> = given
        .iter()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    if names.iter().any(|n| n == "*") {
        return if names.len() == 1 {
            Ok(ControlNamespaces::All)
        } else {
            Err("--control-namespaces: `*` (any namespace) cannot be combined with names".into())
        };
    }
    if names.is_empty() {
        names.push(own.to_owned());
    }
    names.sort();
    names.dedup();
    Ok(ControlNamespaces::Only(names))
}

/// The controller's options from the flags, defaults resolved.
fn options(args: RunArgs) -> Result<Options, String> {
    let control_namespaces = control_namespaces(&args.control_namespaces, &args.namespace)?;
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "sluice".to_owned());
    Ok(Options {
        kubeconfig: args.kubeconfig,
        listen: args.listen,
        lease: args.leader_elect.then(|| LeaseSettings {
            namespace: args.lease_namespace.unwrap_or(args.namespace),
            name: args.lease_name,
            identity: identity.clone(),
        }),
        identity,
        control_namespaces,
        concurrency: args.concurrency,
        debounce: args.debounce,
        settings: Settings {
            resync: args.resync_interval,
            status_concurrency: usize::from(args.status_concurrency),
            status_write_timeout: args.status_write_timeout,
            ..Settings::default()
        },
    })
}

/// The options of a container running `sluice run ARGS` in `pod_namespace` (its
/// `POD_NAMESPACE`), through the real flag parser: lets install manifests be checked
/// against what the operator will do with them.
pub fn container_options(args: &[String], pod_namespace: &str) -> Result<Options, String> {
    #[derive(clap::Parser)]
    struct Container {
        #[command(flatten)]
        run: RunArgs,
    }
    let namespace_given = args
        .iter()
        .any(|a| a == "--namespace" || a.starts_with("--namespace="));
    let mut argv = vec!["sluice".to_owned()];
    if !namespace_given {
        argv.push(format!("--namespace={pod_namespace}"));
    }
    argv.extend(args.iter().cloned());
    let parsed = <Container as clap::Parser>::try_parse_from(argv).map_err(|e| e.to_string())?;
    options(parsed.run)
}

pub fn run(args: RunArgs) -> Result<(), String> {
    init_tracing(args.log_format);
    let options = options(args)?;
    tracing::info!(control_namespaces = %options.control_namespaces, "starting");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime
        .block_on(controller::run(options))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a log line looks like, from the same subscriber `sluice run` installs.
    fn logged(format: LogFormat, ansi: bool) -> String {
        let buffer: std::sync::Arc<std::sync::Mutex<Vec<u8>>> = std::sync::Arc::default();
        let sink = buffer.clone();
        let writer = move || Sink(sink.clone());
        let subscriber = subscriber(
            format,
            tracing_subscriber::EnvFilter::new("info"),
            writer,
            ansi,
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!("reconcile", kind = "Logging", name = "main").in_scope(|| {
                tracing::info!(applied = 1, millis = 12, "reconciled");
                tracing::debug!("reconciled; nothing changed");
            });
        });
        let bytes = buffer.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut buffer) = self.0.lock() {
                buffer.extend_from_slice(data);
            }
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_logs_have_no_colour_codes_off_a_terminal() {
        let plain = logged(LogFormat::Plain, false);
        assert!(plain.contains("reconciled"), "{plain}");
        assert!(plain.contains("applied=1"), "{plain}");
        assert!(!plain.contains('\u{1b}'), "{plain:?}");
        // Debug lines (no-op reconciles) stay out at the default level.
        assert!(!plain.contains("nothing changed"), "{plain}");
        // What a terminal gets, so the check above can fail.
        assert!(logged(LogFormat::Plain, true).contains('\u{1b}'));
        let json = logged(LogFormat::Json, false);
        assert!(!json.contains('\u{1b}'), "{json:?}");
        assert!(json.contains("\"applied\":1"), "{json}");
    }

    #[test]
    fn status_writes_are_bounded_and_timed_out_from_flags() {
        let options = options_of(&[], "ops").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(options.settings.status_concurrency, 16);
        assert_eq!(
            options.settings.status_write_timeout,
            Duration::from_secs(10)
        );
        let options = options_of(
            &["--status-concurrency", "4", "--status-write-timeout", "2s"],
            "ops",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(options.settings.status_concurrency, 4);
        assert_eq!(
            options.settings.status_write_timeout,
            Duration::from_secs(2)
        );
        assert!(options_of(&["--status-concurrency", "0"], "ops").is_err());
    }

    fn options_of(args: &[&str], pod_namespace: &str) -> Result<Options, String> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        container_options(&args, pod_namespace)
    }

    fn names(list: &[&str]) -> ControlNamespaces {
        ControlNamespaces::Only(list.iter().map(|n| (*n).to_owned()).collect())
    }

    #[test]
    fn default_control_and_lease_namespace_is_the_operators_own() {
        let options = options_of(&["--leader-elect"], "ops").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(options.control_namespaces, names(&["ops"]));
        assert_eq!(options.lease.map(|l| l.namespace).as_deref(), Some("ops"));
        // Deployments set the pod's namespace through the downward API.
        let command = <RunArgs as clap::Args>::augment_args(clap::Command::new("run"));
        let namespace = command
            .get_arguments()
            .find(|a| a.get_id() == "namespace")
            .unwrap_or_else(|| panic!("no --namespace"));
        assert_eq!(
            namespace.get_env().and_then(|e| e.to_str()),
            Some("POD_NAMESPACE")
        );
        assert_eq!(
            namespace
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
            ["sluice-system"]
        );
    }

    #[test]
    fn control_namespaces_widen_explicitly() {
        let widened = options_of(&["--control-namespaces", "b,a,b"], "ops");
        assert_eq!(
            widened.map(|o| o.control_namespaces),
            Ok(names(&["a", "b"]))
        );
        let all = options_of(&["--control-namespaces=*"], "ops");
        assert_eq!(
            all.map(|o| o.control_namespaces),
            Ok(ControlNamespaces::All)
        );
        assert!(options_of(&["--control-namespaces", "*,a"], "ops").is_err());
    }

    #[test]
    fn lease_namespace_overrides() {
        let options = options_of(&["--leader-elect", "--lease-namespace", "leases"], "ops")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            options.lease.map(|l| l.namespace).as_deref(),
            Some("leases")
        );
        assert_eq!(options.control_namespaces, names(&["ops"]));
        let explicit = options_of(&["--namespace=other"], "ops").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(explicit.control_namespaces, names(&["other"]));
    }
}
