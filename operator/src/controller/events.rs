//! Events (events.k8s.io) on the objects concerned. Warnings are published once per new
//! problem, not on every reconcile, so a cluster at rest produces none.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::model::{ObjectKey, Problem};

/// Publishes Events, remembering which problems were already announced.
pub struct Announcer {
    recorder: Recorder,
    announced: Mutex<HashMap<ObjectKey, BTreeSet<String>>>,
}

/// Reference of a Sluice object, for Events.
pub fn reference(key: &ObjectKey, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some(crate::api::API_VERSION.to_owned()),
        kind: Some(key.kind.as_str().to_owned()),
        name: Some(key.name.clone()),
        namespace: key.namespace.clone(),
        uid,
        ..ObjectReference::default()
    }
}

impl Announcer {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            recorder: Recorder::new(client, reporter),
            announced: Mutex::new(HashMap::new()),
        }
    }

    /// Problems of `key` not announced before; forgets announced problems that are gone, so
    /// a problem that comes back is announced again. The first time an object is seen in
    /// this process, the problems its stored status already lists count as announced, so a
    /// restart publishes nothing new.
    fn fresh(&self, key: &ObjectKey, problems: &[Problem], recorded: &[String]) -> Vec<Problem> {
        let mut announced = self
            .announced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current: BTreeSet<String> = problems.iter().map(ToString::to_string).collect();
        let before = announced
            .remove(key)
            .unwrap_or_else(|| recorded.iter().cloned().collect());
        let mut fresh: Vec<Problem> = problems
            .iter()
            .filter(|p| !before.contains(&p.to_string()))
            .cloned()
            .collect();
        fresh.sort();
        fresh.dedup();
        if !current.is_empty() {
            announced.insert(key.clone(), current);
        }
        fresh
    }

    /// A Warning Event for each new problem of the object. `recorded` are the problem lines
    /// of its stored status.
    pub async fn problems(
        &self,
        key: &ObjectKey,
        uid: Option<String>,
        problems: &[Problem],
        recorded: &[String],
    ) {
        let fresh = self.fresh(key, problems, recorded);
        if fresh.is_empty() {
            return;
        }
        let reference = reference(key, uid);
        for problem in fresh {
            self.publish(
                &reference,
                EventType::Warning,
                problem.reason,
                "Validate",
                problem.to_string(),
            )
            .await;
        }
    }

    /// A Normal Event (creation, rotation, recreation).
    pub async fn normal(
        &self,
        reference: &ObjectReference,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(reference, EventType::Normal, reason, action, note)
            .await;
    }

    /// A Warning Event not tied to a [`Problem`] (a failed reconcile).
    pub async fn warning(
        &self,
        reference: &ObjectReference,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(reference, EventType::Warning, reason, action, note)
            .await;
    }

    async fn publish(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            // The API server rejects notes over 1 KiB.
            note: Some(truncate(note, 1000)),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, reference).await {
            // An Event that cannot be written must not fail the reconcile that produced it.
            tracing::warn!(%error, reason, "could not publish event");
        }
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}
