//! Object statuses (Flows, Outputs and their cluster variants) are written apart from the
//! reconciles that compute them. A reconcile queues the statuses that changed and returns;
//! one writer per process drains the queue, `--status-concurrency` writes at a time, and
//! starts none while a reconcile applies configuration, so a config change never waits
//! behind thousands of status writes and statuses still progress while changes keep coming
//! (a reconcile that had to write them itself was cut short by every change: at 10,000
//! flows they fell a minute behind the last apply on a real API server).
//!
//! The queue holds the newest status wanted per object: a newer one replaces a queued one in
//! place, so an object changing faster than its status can be written costs one write, not
//! one per change. An object has at most one write in flight, so writes of one object never
//! overtake each other.
//!
//! A status saying the object waits for the data plane (`Ready` reason `Pending`) is written
//! only when no other is queued. While many objects arrive at once most of them run seconds
//! later, and their queued `Pending` is then replaced before it was written: at 10,000 flows
//! the waiting statuses were half of all writes, and each costs the API server as much as a
//! useful one (about 4 ms of its CPU, whatever the patch type).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use foldhash::{HashMap, HashSet};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kube::api::ApiResource;

use super::context::Context;
use crate::api::ObjectStatus;
use crate::model::ObjectKey;

/// A status to write.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingStatus {
    pub key: ObjectKey,
    /// Shared by every status of a kind: thousands are queued at once at 10,000 flows.
    pub resource: Arc<ApiResource>,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub status: ObjectStatus,
}

/// The queue and what is in flight, by object (its API path: one write in flight per path).
/// Pure bookkeeping, no I/O.
#[derive(Debug, Default)]
pub struct Queue {
    /// The newest status wanted per object, not yet being written.
    wanted: HashMap<ObjectKey, PendingStatus>,
    /// Objects in the order they were queued, by whether their wanted status waits for the
    /// data plane ([`waits_for_data_plane`]; those go last); may hold some no longer wanted
    /// or wanted in the other class (skipped).
    order: [VecDeque<ObjectKey>; 2],
    /// Objects being written.
    in_flight: HashSet<ObjectKey>,
    /// Reconciles applying configuration right now; no write starts meanwhile.
    config_phases: usize,
    /// Whether a writer task runs.
    writing: bool,
}

impl Queue {
    /// Queues `status`, replacing what was wanted for the object before.
    pub fn want(&mut self, status: PendingStatus) {
        let key = status.key.clone();
        let class = class_of(&status);
        let before = self
            .wanted
            .insert(key.clone(), status)
            .map(|s| class_of(&s));
        // An object in flight is queued again when its write ends.
        if before != Some(class) && !self.in_flight.contains(&key) {
            self.order[class].push_back(key);
        }
    }

    /// Whether exactly this status is queued for the object.
    pub fn holds(&self, key: &ObjectKey, status: &ObjectStatus) -> bool {
        self.wanted.get(key).is_some_and(|p| &p.status == status)
    }

    /// The object's stored status is current: nothing queued for it is needed any more.
    pub fn withdraw(&mut self, key: &ObjectKey) {
        self.wanted.remove(key);
    }

    /// The next status to write, unless configuration is being applied or `bound` writes
    /// are in flight.
    pub fn next(&mut self, bound: usize) -> Option<PendingStatus> {
        if self.config_phases > 0 || self.in_flight.len() >= bound {
            return None;
        }
        for class in 0..self.order.len() {
            while let Some(key) = self.order[class].pop_front() {
                if self.in_flight.contains(&key)
                    || self.wanted.get(&key).is_none_or(|s| class_of(s) != class)
                {
                    // Queued again when its write ends, gone, or queued in the other class.
                    continue;
                }
                if let Some(status) = self.wanted.remove(&key) {
                    self.in_flight.insert(key);
                    return Some(status);
                }
            }
        }
        None
    }

    /// A write of `key` ended; a status wanted meanwhile goes to the back of the queue.
    pub fn done(&mut self, key: &ObjectKey) {
        self.in_flight.remove(key);
        if let Some(status) = self.wanted.get(key) {
            self.order[class_of(status)].push_back(key.clone());
        }
    }

    /// A failed write to try again: queued unless something newer is wanted already.
    pub fn retry(&mut self, status: PendingStatus) {
        if !self.wanted.contains_key(&status.key) {
            self.want(status);
        }
    }

    /// Statuses wanted or being written.
    pub fn pending(&self) -> usize {
        self.wanted.len() + self.in_flight.len()
    }

    fn idle(&self) -> bool {
        self.wanted.is_empty() && self.in_flight.is_empty()
    }
}

/// Whether the status says the object waits for the data plane to run it.
fn waits_for_data_plane(status: &ObjectStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == super::status::READY && c.reason == super::data_plane::PENDING)
}

/// The queue a status goes in: 0 first, 1 (waiting for the data plane) when 0 is empty.
fn class_of(status: &PendingStatus) -> usize {
    usize::from(waits_for_data_plane(&status.status))
}

/// The queue shared by the reconciles and the writer task.
#[derive(Default)]
pub struct StatusWriter {
    queue: Mutex<Queue>,
    /// New work, the end of a config phase, or the end of a write.
    wake: tokio::sync::Notify,
    /// Told whenever the queue may have become idle.
    settled: tokio::sync::Notify,
}

/// Held by a reconcile while it applies configuration: no status write starts meanwhile.
pub struct ConfigPhase<'a>(&'a StatusWriter);

impl Drop for ConfigPhase<'_> {
    fn drop(&mut self) {
        self.0.queue().config_phases -= 1;
        self.0.wake.notify_one();
    }
}

impl StatusWriter {
    /// The queue; a panic while holding it cannot leave it inconsistent in a way that
    /// matters more than one status write, so a poisoned lock is recovered.
    pub fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds status writes until the returned guard is dropped.
    pub fn config_phase(&self) -> ConfigPhase<'_> {
        self.queue().config_phases += 1;
        ConfigPhase(self)
    }

    /// Starts the writer task unless it runs; it ends once the queue is empty.
    pub fn start(ctx: &Arc<Context>) {
        {
            let mut queue = ctx.status_writer.queue();
            if queue.writing || queue.idle() {
                return;
            }
            queue.writing = true;
        }
        ctx.status_writer.wake.notify_one();
        tokio::spawn(write_queued(ctx.clone()));
    }

    /// Resolves once nothing is queued or in flight (failed writes waiting to be tried
    /// again do not count).
    pub async fn until_idle(&self) {
        loop {
            let settled = self.settled.notified();
            if self.queue().idle() {
                return;
            }
            settled.await;
        }
    }
}

/// The writer task: writes queued statuses until none is left.
async fn write_queued(ctx: Arc<Context>) {
    let writer = &ctx.status_writer;
    let bound = ctx.settings.status_concurrency.max(1);
    let mut writes = FuturesUnordered::new();
    loop {
        let wake = writer.wake.notified();
        loop {
            let next = writer.queue().next(bound);
            match next {
                Some(status) => writes.push(write_one(&ctx, status)),
                None => break,
            }
        }
        ctx.metrics.status_pending(writer.queue().pending());
        if writes.is_empty() {
            let finished = {
                let mut queue = writer.queue();
                let idle = queue.idle();
                if idle {
                    queue.writing = false;
                }
                idle
            };
            if finished {
                writer.settled.notify_waiters();
                return;
            }
            // Held by a config phase: its end wakes us.
            wake.await;
            continue;
        }
        tokio::select! {
            Some(key) = writes.next() => {
                writer.queue().done(&key);
                writer.settled.notify_waiters();
            }
            () = wake => {}
        }
    }
}

/// Writes one status; answers its object. A failure is tried again after a backoff.
async fn write_one(ctx: &Arc<Context>, item: PendingStatus) -> ObjectKey {
    let key = item.key.clone();
    let uid = item.uid.clone();
    let timeout = ctx.settings.status_write_timeout;
    let write = super::status::write_erased(
        &ctx.client,
        &item.resource,
        item.namespace.as_deref(),
        &item.name,
        &item.status,
    );
    let failure = match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => {
            ctx.metrics.wrote("status", item.key.kind.as_str());
            super::reconcile::remember_written(ctx, Some(uid.clone()), &item.status);
            ctx.memory().status_failures.remove(&uid);
            return key;
        }
        // Deleted since the cache was read: its deletion event is on its way and nothing is
        // left to report on.
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => {
            tracing::debug!(object = %item.key, "status not written: the object is gone");
            return key;
        }
        Ok(Err(error)) => ("StatusPatchFailed", error.to_string()),
        Err(_) => (
            "StatusPatchTimeout",
            format!("no answer within {}", humantime::format_duration(timeout)),
        ),
    };
    let (category, error) = failure;
    ctx.metrics.failed(item.key.kind.as_str(), category);
    let failures = {
        let mut memory = ctx.memory();
        let count = memory.status_failures.entry(uid.clone()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    let after = super::reconcile::backoff(ctx, failures);
    tracing::warn!(object = %item.key, %error, category, retry_in = ?after, "status write failed");
    let ctx = ctx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        ctx.status_writer.queue().retry(item);
        StatusWriter::start(&ctx);
    });
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    fn pending(uid: &str, reason: &str) -> PendingStatus {
        PendingStatus {
            key: key(uid),
            resource: Arc::new(ApiResource::erase::<crate::api::Flow>(&())),
            namespace: Some("a".to_owned()),
            name: uid.to_owned(),
            uid: uid.to_owned(),
            status: ObjectStatus {
                problems: vec![reason.to_owned()],
                ..ObjectStatus::default()
            },
        }
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::namespaced(Kind::Flow, "a", name)
    }

    fn uids(queue: &mut Queue, bound: usize) -> Vec<String> {
        std::iter::from_fn(|| queue.next(bound))
            .map(|p| format!("{}:{}", p.uid, p.status.problems[0]))
            .collect()
    }

    /// A status whose `Ready` reason is `reason`, problem `text` to tell them apart.
    fn ready(uid: &str, reason: &str, text: &str) -> PendingStatus {
        let mut status = pending(uid, text);
        status.status.conditions = vec![
            serde_json::from_value(serde_json::json!({
                "type": crate::controller::status::READY,
                "status": "False",
                "reason": reason,
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }))
            .unwrap_or_else(|e| panic!("{e}")),
        ];
        status
    }

    #[test]
    fn statuses_waiting_for_the_data_plane_go_last_and_one_replaced_meanwhile_is_never_written() {
        let mut queue = Queue::default();
        queue.want(ready("a", "Pending", "1"));
        queue.want(ready("b", "Pending", "1"));
        queue.want(ready("c", "Pending", "1"));
        queue.want(ready("d", "Unused", "1"));
        // a runs before its waiting status was written; c waits again after running.
        queue.want(ready("a", "Running", "2"));
        queue.want(ready("c", "Running", "2"));
        queue.want(ready("c", "Pending", "3"));
        assert_eq!(uids(&mut queue, 10), ["d:1", "a:2", "b:1", "c:3"]);
        // A status in flight: the next one follows its write, in its own class.
        queue.want(ready("b", "Running", "4"));
        queue.want(ready("e", "Pending", "1"));
        queue.done(&key("b"));
        assert_eq!(uids(&mut queue, 10), ["b:4", "e:1"]);
    }

    #[test]
    fn a_newer_status_replaces_a_queued_one_in_its_place() {
        let mut queue = Queue::default();
        queue.want(pending("a", "1"));
        queue.want(pending("b", "1"));
        queue.want(pending("a", "2"));
        assert!(queue.holds(&key("a"), &pending("a", "2").status));
        assert!(!queue.holds(&key("a"), &pending("a", "1").status));
        assert_eq!(uids(&mut queue, 10), ["a:2", "b:1"]);
    }

    #[test]
    fn nothing_starts_while_configuration_is_applied_or_the_bound_is_reached() {
        let mut queue = Queue::default();
        for uid in ["a", "b", "c"] {
            queue.want(pending(uid, "1"));
        }
        queue.config_phases = 1;
        assert_eq!(queue.next(10), None);
        queue.config_phases = 0;
        assert_eq!(uids(&mut queue, 2), ["a:1", "b:1"]);
        queue.done(&key("a"));
        assert_eq!(uids(&mut queue, 2), ["c:1"]);
        assert_eq!(queue.pending(), 2);
    }

    #[test]
    fn an_object_has_one_write_in_flight_and_the_newest_status_follows_it() {
        let mut queue = Queue::default();
        queue.want(pending("a", "1"));
        assert_eq!(uids(&mut queue, 10), ["a:1"]);
        queue.want(pending("a", "2"));
        assert_eq!(uids(&mut queue, 10), Vec::<String>::new(), "a:1 in flight");
        queue.done(&key("a"));
        assert_eq!(uids(&mut queue, 10), ["a:2"]);
        queue.done(&key("a"));
        assert!(queue.idle());
    }

    #[test]
    fn a_withdrawn_status_is_not_written_and_a_retry_never_replaces_a_newer_one() {
        let mut queue = Queue::default();
        queue.want(pending("a", "1"));
        queue.want(pending("b", "1"));
        queue.withdraw(&key("a"));
        assert_eq!(uids(&mut queue, 10), ["b:1"]);
        queue.want(pending("b", "2"));
        queue.done(&key("b"));
        queue.retry(pending("b", "1"));
        queue.retry(pending("c", "1"));
        assert_eq!(uids(&mut queue, 10), ["b:2", "c:1"]);
    }
}
