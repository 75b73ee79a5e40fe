//! The only code that talks to the API server: `sluice run`, and the read-only listing
//! `sluice migrate --kubeconfig` does ([`incumbent`]).
//!
//! Reflectors cache the Sluice kinds, namespace metadata and Sluice's own children
//! ([`watches`]); any change reconciles every Logging ([`reconcile`]), which resolves the
//! pure model, plans TLS, builds objects, applies them ([`apply`]), deletes leftovers, and
//! writes [`status`] and [`events`]. Only the Lease holder ([`leader`]) reconciles.

pub mod apply;
pub mod context;
pub mod data_plane;
pub mod events;
pub mod incumbent;
pub mod inventory;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod rollout;
pub mod server;
pub mod status;
pub mod status_writer;
pub mod watches;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::events::Reporter;
use kube::runtime::{Controller, watcher};
use kube::{Client, Config};
use tokio::sync::watch;

pub use context::{Context, ControlNamespaces, Error, Settings};

use crate::api::Logging;

/// How `sluice run` runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Explicit kubeconfig; otherwise in-cluster, then `KUBECONFIG` / `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Address of the metrics and health server.
    pub listen: SocketAddr,
    /// `None` runs without leader election (one replica only).
    pub lease: Option<leader::LeaseSettings>,
    /// Identity in Events and the Lease.
    pub identity: String,
    /// Namespaces Loggings may use as `controlNamespace`; Sluice watches and writes Secrets
    /// only there.
    pub control_namespaces: ControlNamespaces,
    pub concurrency: u16,
    pub debounce: Duration,
    pub settings: Settings,
}

/// Why `sluice run` could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no Kubernetes configuration: {0}")]
    Config(String),
    /// No HTTP answer at all: DNS, TCP, TLS or a timeout.
    #[error("cannot reach the API server{}: {source}", at(server))]
    Unreachable {
        server: Option<String>,
        #[source]
        source: kube::Error,
    },
    #[error(
        "authentication failed: the API server{} answered 401 Unauthorized to {}: the credentials are missing, expired or not trusted by this cluster",
        at(server),
        identity.as_deref().unwrap_or("the configured credentials")
    )]
    Unauthenticated {
        identity: Option<String>,
        server: Option<String>,
    },
    #[error(
        "the Logging CRD is not installed (404 listing Loggings): `sluice crds | kubectl apply --server-side -f -`"
    )]
    MissingCrds,
    #[error(
        "authorization failed: 403 Forbidden listing Loggings as {}: {message}: bind the operator's ClusterRole (deploy/rbac/operator.yaml or the chart) to this identity",
        identity.as_deref().unwrap_or("the configured credentials")
    )]
    Forbidden {
        identity: Option<String>,
        message: String,
    },
    #[error(
        "the API server{} answered {code} listing Loggings: {message}",
        at(server)
    )]
    Rejected {
        server: Option<String>,
        code: u16,
        message: String,
    },
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("metrics server: {0}")]
    Server(#[from] std::io::Error),
}

fn at(server: &Option<String>) -> String {
    server
        .as_deref()
        .map(|s| format!(" at {s}"))
        .unwrap_or_default()
}

impl RunError {
    /// The first request's failure, sorted by cause: the API server's answer says whether
    /// it could not tell who we are (401), would not let us (403) or lacks the CRDs (404);
    /// no answer at all is a connection problem.
    fn from_first_request(error: kube::Error) -> Self {
        match error {
            kube::Error::Api(status) => match status.code {
                401 => RunError::Unauthenticated {
                    identity: None,
                    server: None,
                },
                403 => RunError::Forbidden {
                    identity: None,
                    message: status.message,
                },
                404 => RunError::MissingCrds,
                code => RunError::Rejected {
                    server: None,
                    code,
                    message: status.message,
                },
            },
            source => RunError::Unreachable {
                server: None,
                source,
            },
        }
    }

    /// Names the identity and the API server, known only where the client was configured.
    pub fn naming(mut self, who: &Identity) -> Self {
        match &mut self {
            RunError::Unauthenticated { identity, server } => {
                *identity = Some(who.credentials.clone());
                *server = Some(who.server.clone());
            }
            RunError::Forbidden { identity, .. } => *identity = Some(who.credentials.clone()),
            RunError::Unreachable { server, .. } | RunError::Rejected { server, .. } => {
                *server = Some(who.server.clone())
            }
            _ => {}
        }
        self
    }
}

/// Who the operator is to the API server, for error messages: never the secret itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The API server's URL.
    pub server: String,
    /// How the client authenticates and as whom, e.g. `the service account token of
    /// "system:serviceaccount:sluice-system:sluice-operator"`.
    pub credentials: String,
}

impl Identity {
    fn of(config: &Config, source: &str) -> Self {
        Self {
            server: config.cluster_url.to_string(),
            credentials: format!("{} ({source})", credentials(&config.auth_info)),
        }
    }
}

/// The credentials a client presents, described by the subject they carry where it can be
/// read without asking anyone: a token's `sub` claim, a client certificate's subject.
pub fn credentials(auth: &kube::config::AuthInfo) -> String {
    use secrecy::ExposeSecret;
    let token = auth
        .token
        .as_ref()
        .map(|t| t.expose_secret().to_owned())
        .or_else(|| {
            let file = auth.token_file.as_ref()?;
            std::fs::read_to_string(file).ok()
        });
    if let Some(token) = token {
        return match token_subject(token.trim()) {
            Some(subject) => format!("a bearer token for \"{subject}\""),
            None => "a bearer token".to_owned(),
        };
    }
    let certificate = auth
        .client_certificate_data
        .as_ref()
        .and_then(|data| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .ok()
        })
        .or_else(|| std::fs::read(auth.client_certificate.as_ref()?).ok());
    if let Some(pem) = certificate {
        return match certificate_subject(&pem) {
            Some(subject) => format!("the client certificate of \"{subject}\""),
            None => "a client certificate".to_owned(),
        };
    }
    if let Some(exec) = &auth.exec {
        let command = exec.command.as_deref().unwrap_or("?");
        return format!("credentials from the exec plugin `{command}`");
    }
    if let Some(user) = &auth.username {
        return format!("user \"{user}\" (basic authentication)");
    }
    "no credentials (anonymous)".to_owned()
}

/// The `sub` claim of a JSON Web Token (a ServiceAccount token's is
/// `system:serviceaccount:NAMESPACE:NAME`), read without checking the signature: only for
/// naming it in a message.
fn token_subject(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["sub"].as_str().map(str::to_owned)
}

fn certificate_subject(pem: &[u8]) -> Option<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let certificate = pem.parse_x509().ok()?;
    Some(certificate.subject().to_string())
}

/// Connects from a kubeconfig file, in-cluster, or the usual kubeconfig locations.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, RunError> {
    connect(kubeconfig).await.map(|(client, _)| client)
}

/// [`client`], with who it is to the API server.
pub async fn connect(kubeconfig: Option<&std::path::Path>) -> Result<(Client, Identity), RunError> {
    // One rustls provider for the whole process, chosen before the first TLS connection.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (config, source) = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| RunError::Config(format!("{}: {e}", path.display())))?;
            let config =
                Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                    .await
                    .map_err(|e| RunError::Config(e.to_string()))?;
            (config, format!("kubeconfig {}", path.display()))
        }
        None => match Config::incluster() {
            Ok(config) => (config, "in-cluster service account".to_owned()),
            Err(_) => (
                Config::infer()
                    .await
                    .map_err(|e| RunError::Config(e.to_string()))?,
                "KUBECONFIG or ~/.kube/config".to_owned(),
            ),
        },
    };
    let identity = Identity::of(&config, &source);
    let client = Client::try_from(config).map_err(|e| RunError::Config(e.to_string()))?;
    Ok((client, identity))
}

/// Resolves on SIGTERM or Ctrl-C.
pub(crate) async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(crate) async fn until_true(mut receiver: watch::Receiver<bool>) {
    let _ = receiver.wait_for(|value| *value).await;
}

async fn until_false(mut receiver: watch::Receiver<bool>) {
    let _ = receiver.wait_for(|value| !*value).await;
}

/// Runs the operator until SIGTERM.
pub async fn run(options: Options) -> Result<(), RunError> {
    let (client, identity) = connect(options.kubeconfig.as_deref()).await?;
    run_with(client, options, termination())
        .await
        .map_err(|error| error.naming(&identity))
}

/// Runs the operator with a given client until `stop` resolves (tests stop it this way).
pub async fn run_with(
    client: Client,
    options: Options,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    Api::<Logging>::all(client.clone())
        .list_metadata(&ListParams::default().limit(1))
        .await
        .map_err(RunError::from_first_request)?;

    let (stop_sender, stopping) = watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        tracing::info!("termination requested; finishing running reconciles");
        let _ = stop_sender.send(true);
    });

    let metrics = Arc::new(metrics::Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let server = tokio::spawn(server::serve(
        options.listen,
        server::router(metrics.clone(), ready.clone()),
        until_true(stopping.clone()),
    ));

    let watches = watches::watches(&client, &options.control_namespaces);
    for task in watches.tasks {
        tokio::spawn(task);
    }
    tokio::select! {
        _ = watches.ready => {}
        _ = until_true(stopping.clone()) => return Ok(()),
    }
    ready.store(true, Ordering::Relaxed);
    tracing::info!("caches synced");

    let reporter = Reporter {
        controller: "sluice".to_owned(),
        instance: Some(options.identity.clone()),
    };
    let clock: context::Clock = Arc::new(jiff::Timestamp::now);
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            watches.stores,
            metrics,
            clock,
            options.settings.clone(),
            reporter,
        )
        .with_trigger(watches.trigger.clone()),
    );
    let (leading, holder) = match &options.lease {
        Some(lease) => {
            let (leading, holder) = leader::elect(client.clone(), lease).await?;
            (Some(leading), Some(holder))
        }
        None => (None, None),
    };

    loop {
        if let Some(leading) = &leading {
            tracing::info!("waiting to become leader");
            tokio::select! {
                _ = until_true(leading.clone()) => {}
                _ = until_true(stopping.clone()) => break,
            }
            tracing::info!("leading");
        }
        let lost = leading.clone();
        let stop = {
            let stopping = stopping.clone();
            async move {
                match lost {
                    Some(lost) => tokio::select! {
                        _ = until_false(lost) => tracing::warn!("lost the Lease; stopping reconciles"),
                        _ = until_true(stopping) => {}
                    },
                    None => until_true(stopping).await,
                }
            }
        };
        Controller::new(
            Api::<DeserializeGuard<Logging>>::all(client.clone()),
            watcher::Config::default().any_semantic(),
        )
        .with_config(kube::runtime::controller::Config::default().concurrency(options.concurrency))
        // The debounce is adaptive (immediate for a single edit), so it is done here
        // rather than by kube-runtime's fixed one.
        .reconcile_all_on(watches::changes(
            watches.trigger.subscribe(),
            options.debounce,
        ))
        .graceful_shutdown_on(stop)
        .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
            futures::future::ready(())
        })
        .await;
        if *stopping.borrow() {
            break;
        }
    }
    drop(leading);
    if let Some(holder) = holder {
        // Releasing the Lease lets the other replica take over at once instead of after expiry.
        match tokio::time::timeout(Duration::from_secs(5), holder).await {
            Ok(Ok(Ok(_))) => tracing::info!("Lease released"),
            Ok(Ok(Err(error))) => tracing::warn!(%error, "could not release the Lease"),
            Ok(Err(error)) => tracing::warn!(%error, "Lease task failed"),
            Err(_) => tracing::warn!("timed out releasing the Lease"),
        }
    }
    match server.await {
        Ok(result) => result?,
        Err(error) => tracing::warn!(%error, "metrics server task failed"),
    }
    tracing::info!("stopped");
    Ok(())
}
