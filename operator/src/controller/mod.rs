//! The only code that talks to the API server: `sluice run`.
//!
//! Reflectors cache the Sluice kinds, namespace metadata and Sluice's own children
//! ([`watches`]); any change reconciles every Logging ([`reconcile`]), which resolves the
//! pure model, plans TLS, builds objects, applies them ([`apply`]), deletes leftovers, and
//! writes [`status`] and [`events`]. Only the Lease holder ([`leader`]) reconciles.

pub mod apply;
pub mod context;
pub mod events;
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
    #[error("cannot reach the API server: {0}")]
    Unreachable(#[source] kube::Error),
    #[error(
        "the Logging CRD is not installed (404 listing Loggings): `sluice crds | kubectl apply --server-side -f -`"
    )]
    MissingCrds,
    #[error(
        "not allowed to list Loggings ({0}): apply deploy/rbac/operator.yaml for the operator's service account"
    )]
    Forbidden(String),
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("metrics server: {0}")]
    Server(#[from] std::io::Error),
}

/// Connects from a kubeconfig file, in-cluster, or the usual kubeconfig locations.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, RunError> {
    // One rustls provider for the whole process, chosen before the first TLS connection.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| RunError::Config(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| RunError::Config(e.to_string()))?
        }
        None => match Config::incluster() {
            Ok(config) => config,
            Err(_) => Config::infer()
                .await
                .map_err(|e| RunError::Config(e.to_string()))?,
        },
    };
    Client::try_from(config).map_err(|e| RunError::Config(e.to_string()))
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
    let client = client(options.kubeconfig.as_deref()).await?;
    run_with(client, options, termination()).await
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
        .map_err(|error| match error {
            kube::Error::Api(status) if status.code == 404 => RunError::MissingCrds,
            kube::Error::Api(status) if status.code == 403 => RunError::Forbidden(status.message),
            other => RunError::Unreachable(other),
        })?;

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
