//! The config reloader: runs inside each data-plane pod, in the data-plane image, and is the
//! only way a configuration reaches fluentd or fluent-bit (docs/architecture.md, "Config
//! reload"). A shell like the controller, but it talks only to local files, a child process
//! (the data-plane binary's own check) and localhost HTTP (the binary's reload endpoint, and
//! its own `/status` for the operator).
//!
//! One revision at a time: the newest complete bundle in the candidate directory is installed
//! into a directory of its own, checked by the binary, and only if the binary accepts it does
//! `current` point at it and the process reload. A rejected revision is remembered and never
//! retried; the running one stays.

mod check;
mod files;
pub mod http;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bundle::{Rejection, ReloaderStatus, short_revision};

pub use check::Verdict;
pub use http::{Method, serve_status};

/// How many accepted revisions the status lists.
const ACCEPTED_KEPT: usize = 8;
/// Longest wait between two attempts to trigger a reload that failed.
const RELOAD_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest wait for the buffers a new revision drops to stay quiet before it is loaded anyway.
const DROPPED_BUFFERS_WAIT: Duration = Duration::from_secs(120);
/// Longest wait for chunks of a dropped buffer that do not get fewer (its output is down).
const DROPPED_BUFFERS_STALLED: Duration = Duration::from_secs(30);

/// Everything the reloader needs to know; the CLI fills it from flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The newest rendering (projected volume of the candidate Secrets).
    pub candidate: PathBuf,
    /// The newest revision a data-plane binary accepted, as promoted by the operator.
    pub accepted: PathBuf,
    /// Writable: revisions, shared files and the `current` link.
    pub active: PathBuf,
    /// The bundle's entry file (`fluent.conf`, `fluent-bit.yaml`).
    pub entry: String,
    /// The binary's check; `{dir}` stands for the revision directory.
    pub validate: Vec<String>,
    pub validate_timeout: Duration,
    pub reload_url: String,
    pub reload_method: Method,
    /// Where `--once` leaves its reason when it fails (`/dev/termination-log`).
    pub termination_log: Option<PathBuf>,
    /// The buffer volume, whose chunks a drain waits for (aggregator only).
    pub buffer_dir: Option<PathBuf>,
    /// The process's "flush every buffer now" endpoint, called while draining.
    pub flush_url: Option<String>,
    /// How long a buffer a new revision drops must have stayed empty and unwritten before
    /// the process loads the revision: agents whose routing table still has the removed
    /// route (their Secret arrives on its own schedule) keep writing to it until then.
    pub dropped_buffer_quiet: Duration,
}

/// Why the reloader could not give the process a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no usable configuration: the candidate {candidate}; the accepted one {accepted}")]
    NoConfiguration { candidate: String, accepted: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What one pass did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing new (or the candidate is incomplete or was rejected before).
    Idle,
    /// A revision was accepted, `current` points at it and the process was told.
    Applied(String),
    /// Accepted, but the reload trigger failed; it is retried.
    AppliedReloadPending(String),
    Rejected(String),
    /// Accepted by the binary, but a newer candidate arrived meanwhile: not applied.
    Superseded(String),
}

pub struct Reloader {
    settings: Settings,
    status: Arc<Mutex<ReloaderStatus>>,
    rejected: BTreeSet<String>,
    /// A reload that has yet to succeed: when to try next, and the wait after that.
    pending_reload: Option<(Instant, Duration)>,
}

impl Reloader {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            status: Arc::new(Mutex::new(ReloaderStatus::default())),
            rejected: BTreeSet::new(),
            pending_reload: None,
        }
    }

    /// The status, shared with the HTTP server.
    pub fn status_handle(&self) -> Arc<Mutex<ReloaderStatus>> {
        self.status.clone()
    }

    pub fn status(&self) -> ReloaderStatus {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReloaderStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The revision `current` points at, if it is complete.
    pub fn running(&self) -> Option<String> {
        files::current_revision(&self.settings.active)
    }

    /// The init container's job: give the process a configuration before it starts. Keeps a
    /// complete `current` (a restarted container); else installs the candidate if the
    /// binary accepts it; else the accepted bundle if the binary accepts that.
    pub async fn prepare(&mut self) -> Result<String, ReloadError> {
        if let Some(running) = self.running() {
            self.lock().running = Some(running.clone());
            return Ok(running);
        }
        let candidate = match self.try_dir(&self.settings.candidate.clone(), true).await? {
            Ok(revision) => return Ok(revision),
            Err(why) => why,
        };
        let accepted = match self.try_dir(&self.settings.accepted.clone(), false).await? {
            Ok(revision) => return Ok(revision),
            Err(why) => why,
        };
        let error = ReloadError::NoConfiguration {
            candidate,
            accepted,
        };
        if let Some(path) = &self.settings.termination_log {
            let _ = std::fs::write(path, error.to_string());
        }
        Err(error)
    }

    /// Installs and checks the bundle in `dir`; makes it current if accepted. The inner
    /// error says why it is not usable.
    async fn try_dir(
        &mut self,
        dir: &Path,
        is_candidate: bool,
    ) -> Result<Result<String, String>, ReloadError> {
        let bundle = match files::read_bundle(dir) {
            Ok(Some(bundle)) => bundle,
            Ok(None) => return Ok(Err("is absent".to_owned())),
            Err(why) => return Ok(Err(format!("is incomplete ({why})"))),
        };
        let revision = bundle.manifest.revision.clone();
        if is_candidate {
            self.saw_candidate(&bundle.manifest);
        }
        let installed = files::install(&self.settings.active, &bundle).map_err(io_error)?;
        match check::run(&self.settings, &installed).await {
            Verdict::Accepted => {
                files::make_current(&self.settings.active, &revision).map_err(io_error)?;
                self.record_accepted(&revision);
                self.lock().running = Some(revision.clone());
                Ok(Ok(revision))
            }
            Verdict::Rejected(error) => {
                self.record_rejected(&revision, &error);
                Ok(Err(format!(
                    "{} was rejected: {}",
                    short_revision(&revision),
                    error
                )))
            }
        }
    }

    /// What the process runs without this reloader having told it: the revision the init
    /// container (`--once`, another process) installed, or one a restarted sidecar finds.
    /// The process loaded it when it started, so it is running and was accepted: reported as
    /// such, or the operator would never promote a pod's first revision.
    fn adopt_current(&mut self) {
        if self.lock().running.is_some() {
            return;
        }
        if let Some(current) = self.running() {
            self.record_accepted(&current);
            self.lock().running = Some(current);
        }
    }

    /// While draining: counts the chunks left and, with `flush`, asks the process to flush
    /// them now.
    async fn drain_pass(&mut self, flush: bool) {
        if !self.lock().draining {
            return;
        }
        let chunks = self.settings.buffer_dir.as_deref().map(count_chunks);
        self.lock().buffered_chunks = chunks;
        if flush
            && chunks != Some(0)
            && let Some(url) = &self.settings.flush_url
            && let Err(error) = http::trigger(url, Method::Get).await
        {
            tracing::warn!(%error, "flush request failed while draining");
        }
    }

    /// One pass of the watch loop: retry a pending reload, then take the newest candidate if
    /// it is complete, new and not rejected before; while draining, flush.
    pub async fn step(&mut self) -> Result<Outcome, ReloadError> {
        let outcome = self.apply_newest().await;
        // Never a flush request right behind a reload: fluentd flushes from a thread of its
        // own, which then runs into buffers the reload is shutting down (`Buffer#terminate`
        // leaves `@queue` nil: "undefined method `empty?' for nil" on flush). The next pass,
        // one poll interval later, flushes.
        let reloaded = matches!(
            outcome,
            Ok(Outcome::Applied(_) | Outcome::AppliedReloadPending(_))
        );
        self.drain_pass(!reloaded).await;
        outcome
    }

    async fn apply_newest(&mut self) -> Result<Outcome, ReloadError> {
        self.adopt_current();
        if self.running().is_none() {
            // No init container ran (or it failed): do its job first.
            return Ok(match self.prepare().await {
                Ok(revision) => self.reload(revision).await,
                Err(ReloadError::NoConfiguration { .. }) => Outcome::Idle,
                Err(error) => return Err(error),
            });
        }
        if let Some((when, _)) = self.pending_reload
            && Instant::now() >= when
            && let Some(running) = self.running()
        {
            return Ok(self.reload(running).await);
        }
        let Some(bundle) = self.newest_candidate() else {
            return Ok(Outcome::Idle);
        };
        let revision = bundle.manifest.revision.clone();
        if Some(&revision) == self.running().as_ref() || self.rejected.contains(&revision) {
            return Ok(Outcome::Idle);
        }
        let installed = files::install(&self.settings.active, &bundle).map_err(io_error)?;
        match check::run(&self.settings, &installed).await {
            Verdict::Rejected(error) => {
                tracing::warn!(
                    revision = short_revision(&revision),
                    error = error.lines().next().unwrap_or_default(),
                    "configuration rejected; the running one stays"
                );
                self.record_rejected(&revision, &error);
                files::remove_revision(&self.settings.active, &revision);
                Ok(Outcome::Rejected(revision))
            }
            Verdict::Accepted => {
                self.record_accepted(&revision);
                // Only the newest candidate is ever applied: one that arrived during the check
                // is taken on the next pass.
                let newest = self.newest_candidate().map(|b| b.manifest.revision);
                if newest.is_some_and(|newest| newest != revision) {
                    files::remove_revision(&self.settings.active, &revision);
                    return Ok(Outcome::Superseded(revision));
                }
                self.drain_dropped_buffers(&installed).await;
                // The wait takes at least the quiet period: if the change was taken back
                // meanwhile (a Flow deleted and added again), what runs is the newest again,
                // and loading this revision would only restart the workers twice.
                let newest = self.newest_candidate().map(|b| b.manifest.revision);
                if newest.is_some() && newest == self.running() {
                    files::remove_revision(&self.settings.active, &revision);
                    return Ok(Outcome::Superseded(revision));
                }
                let previous = self.running();
                files::make_current(&self.settings.active, &revision).map_err(io_error)?;
                let outcome = self.reload(revision.clone()).await;
                files::collect_garbage(&self.settings.active, &revision, previous.as_deref());
                Ok(outcome)
            }
        }
    }

    /// Buffers the running revision writes to that the revision in `next` drops (a flow or
    /// output removed): their plugins are gone once the process reloads, so nothing would
    /// ever flush a chunk left in them. Agents may still send records for a removed route
    /// for a while (their routing table arrives on its own schedule), and the old process
    /// buffers them there: the revision is loaded only once every dropped buffer has been
    /// empty and unwritten for `dropped_buffer_quiet`, asking the process to flush whatever
    /// arrives. Bounded: an output that is down keeps its chunks on the volume after
    /// [`DROPPED_BUFFERS_STALLED`], agents that never stop after [`DROPPED_BUFFERS_WAIT`].
    /// Only for bundles listing their buffers (the aggregator's).
    async fn drain_dropped_buffers(&mut self, next: &Path) {
        let (Some(flush_url), Some(buffer_dir)) = (
            self.settings.flush_url.clone(),
            self.settings.buffer_dir.clone(),
        ) else {
            return;
        };
        let Some(running) = self.running() else {
            return;
        };
        let current = files::revisions_dir(&self.settings.active).join(&running);
        let (Some(before), Some(after)) = (files::buffers(&current), files::buffers(next)) else {
            return;
        };
        // Also those not created yet: an agent that got the route late may be about to write.
        let dropped: Vec<PathBuf> = before
            .difference(&after)
            .map(PathBuf::from)
            .filter(|path| path.starts_with(&buffer_dir))
            .collect();
        if dropped.is_empty() {
            return;
        }
        let quiet = self.settings.dropped_buffer_quiet;
        let started = Instant::now();
        tracing::info!(
            buffers = dropped.len(),
            quiet = ?quiet,
            "waiting until the buffers the new revision drops stay empty and unwritten"
        );
        let mut asked: Option<Instant> = None;
        let mut announced = false;
        // Fewest chunks seen, and since when no fewer: an output that is down never flushes.
        let mut fewest: Option<(u64, Instant)> = None;
        loop {
            let left: u64 = dropped.iter().map(|path| count_chunks(path)).sum();
            if left == 0 {
                // Counted from this pod's first sight of the revision at the earliest: an
                // agent whose routing table is late starts writing to a buffer only then,
                // however long it was idle before (seen on real fluentd: a chunk arrived 9 s
                // after the route left the agents' Secret, and went to the error output).
                let unwritten = dropped
                    .iter()
                    .map(|path| since_last_change(path))
                    .min()
                    .unwrap_or(Duration::MAX)
                    .min(started.elapsed());
                if unwritten >= quiet {
                    return;
                }
                fewest = None;
            } else {
                if !announced {
                    tracing::info!(
                        buffers = dropped.len(),
                        "flushing the buffers the new revision drops before loading it"
                    );
                    announced = true;
                }
                match fewest {
                    Some((count, _)) if left >= count => {}
                    _ => fewest = Some((left, Instant::now())),
                }
                if fewest.is_some_and(|(_, since)| since.elapsed() >= DROPPED_BUFFERS_STALLED) {
                    tracing::warn!(
                        chunks = left,
                        "buffers the new revision drops do not flush; their chunks stay on the volume"
                    );
                    return;
                }
                // Again every few seconds: a flush that failed is not retried by itself soon.
                if asked.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
                    if let Err(error) = http::trigger(&flush_url, Method::Get).await {
                        tracing::warn!(%error, "flush request failed");
                    }
                    asked = Some(Instant::now());
                }
            }
            if started.elapsed() >= DROPPED_BUFFERS_WAIT {
                tracing::warn!(
                    chunks = left,
                    "records still arrive for buffers the new revision drops; loading it anyway"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn newest_candidate(&mut self) -> Option<files::Bundle> {
        match files::read_bundle(&self.settings.candidate) {
            Ok(Some(bundle)) => {
                self.saw_candidate(&bundle.manifest);
                Some(bundle)
            }
            Ok(None) => None,
            Err(why) => {
                // The kubelet updates each Secret of the volume on its own; the next pass
                // sees the rest.
                tracing::debug!(%why, "candidate bundle not complete yet");
                None
            }
        }
    }

    /// Reports the complete candidate just read as the one this pod loads next.
    fn saw_candidate(&self, manifest: &crate::bundle::Manifest) {
        let mut status = self.lock();
        status.candidate = Some(manifest.revision.clone());
        status.candidate_sequence = (manifest.sequence > 0).then_some(manifest.sequence);
    }

    /// Tells the process to load `current`, which points at `revision`.
    async fn reload(&mut self, revision: String) -> Outcome {
        self.lock().running = Some(revision.clone());
        match http::trigger(&self.settings.reload_url, self.settings.reload_method).await {
            Ok(()) => {
                tracing::info!(
                    revision = short_revision(&revision),
                    "configuration reloaded"
                );
                self.pending_reload = None;
                self.lock().reload_error = None;
                Outcome::Applied(revision)
            }
            Err(error) => {
                let wait = self
                    .pending_reload
                    .map(|(_, wait)| (wait * 2).min(RELOAD_BACKOFF_MAX))
                    .unwrap_or(Duration::from_secs(1));
                tracing::warn!(
                    revision = short_revision(&revision),
                    %error,
                    retry_in = ?wait,
                    "reload trigger failed"
                );
                self.pending_reload = Some((Instant::now() + wait, wait));
                self.lock().reload_error = Some(error);
                Outcome::AppliedReloadPending(revision)
            }
        }
    }

    fn record_accepted(&mut self, revision: &str) {
        let mut status = self.lock();
        status.accepted.retain(|r| r != revision);
        status.accepted.insert(0, revision.to_owned());
        status.accepted.truncate(ACCEPTED_KEPT);
    }

    fn record_rejected(&mut self, revision: &str, error: &str) {
        self.rejected.insert(revision.to_owned());
        self.lock().rejected = Some(Rejection {
            revision: revision.to_owned(),
            error: error.to_owned(),
        });
    }
}

/// Buffer chunk files under `dir` (fluentd names them `buffer.<b|q><id>.log`, each with a
/// `.meta` file that does not count).
pub fn count_chunks(dir: &Path) -> u64 {
    let mut count = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("buffer.") && !n.ends_with(".meta"))
            {
                count += 1;
            }
        }
    }
    count
}

/// How long ago anything under `dir` was created, removed or written: fluentd creates a chunk
/// file for the first record of a chunk and removes it once flushed, and either changes the
/// modification time of the directory holding it.
fn since_last_change(dir: &Path) -> Duration {
    let mut newest: Option<std::time::SystemTime> = None;
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if let Ok(modified) = metadata.modified() {
            newest = Some(newest.map_or(modified, |n| n.max(modified)));
        }
        if metadata.is_dir() {
            pending.extend(
                std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|entry| entry.path()),
            );
        }
    }
    newest
        .and_then(|newest| newest.elapsed().ok())
        .unwrap_or(Duration::MAX)
}

fn io_error((path, source): (PathBuf, std::io::Error)) -> ReloadError {
    ReloadError::Io { path, source }
}

/// The watch loop: serves the status and takes every new candidate until `shutdown`.
pub async fn watch(
    mut reloader: Reloader,
    poll_interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        match reloader.step().await {
            Ok(Outcome::Superseded(_)) => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "reload pass failed"),
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(poll_interval) => {}
        }
    }
}
