//! The reflectors: one cache per kind the controller reads, each feeding a single "something
//! changed" signal that reconciles every Logging. The signal is a `watch` channel, so a burst
//! of changes (1,000 Flows applied at once) collapses into one pending notification, which
//! the controller's debounce turns into few reconciles.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, PartialObjectMeta};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::apply::{MANAGED_BY_LABEL, api_resource};
use super::context::{ControlNamespaces, Stores};
use crate::api::{ClusterFlow, ClusterOutput, Flow, Logging, Output};
use crate::build::ChildKind;
use crate::layout::{LOGGING_LABEL, MANAGED_BY};

/// A reflector's driving future.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Bumped on every relevant change; the controller reconciles all Loggings when it moves.
pub type Trigger = Arc<Signal>;

/// The change counter, and, for changes of the configuration's inputs (the Sluice kinds and
/// namespace labels, not Sluice's own children), their own counter and when the oldest one
/// no reconcile has picked up yet arrived (the start of the edit-to-config latency).
/// Sluice's own applies and workload rollouts trigger reconciles but do not count as edits.
#[derive(Debug)]
pub struct Signal {
    sender: watch::Sender<u64>,
    inputs: std::sync::atomic::AtomicU64,
    oldest: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Default for Signal {
    fn default() -> Self {
        Self {
            sender: watch::Sender::new(0),
            inputs: std::sync::atomic::AtomicU64::new(0),
            oldest: std::sync::Mutex::new(None),
        }
    }
}

impl Signal {
    /// Records a change of a configuration input seen by a watch.
    pub fn bump(&self) {
        self.oldest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get_or_insert_with(std::time::Instant::now);
        self.inputs
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.bump_other();
    }

    /// Records a change of one of Sluice's own children: reconcile, nothing more.
    pub fn bump_other(&self) {
        self.sender.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// How many changes have been seen.
    pub fn count(&self) -> u64 {
        *self.sender.borrow()
    }

    /// How many changes of configuration inputs have been seen.
    pub fn inputs(&self) -> u64 {
        self.inputs.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// When the oldest change not yet taken arrived; the reconcile that takes it reports
    /// the latency.
    pub fn take_oldest(&self) -> Option<std::time::Instant> {
        self.oldest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// Whether a change of a configuration input arrived that no reconcile has taken yet.
    pub fn waiting(&self) -> bool {
        self.oldest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.sender.subscribe()
    }
}

/// Label selector of everything Sluice creates.
pub fn children_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY},{LOGGING_LABEL}")
}

/// The caches, the futures that fill them, and a future resolving once all are filled.
pub struct Watches {
    pub stores: Stores,
    pub tasks: Vec<Task>,
    pub trigger: Trigger,
    pub ready: Pin<Box<dyn Future<Output = ()> + Send>>,
}

fn config() -> watcher::Config {
    // Small pages bound the memory peak of the initial list.
    watcher::Config::default().page_size(50).any_semantic()
}

/// Which changes of an object matter: the signature changes only when the object does in a
/// way the pipeline depends on.
type Signature<K> = fn(&K) -> String;

fn generation<K: Resource>(object: &K) -> String {
    format!("{:?}", object.meta().generation)
}

fn labels<K: Resource>(object: &K) -> String {
    format!("{:?}", object.meta().labels)
}

fn resource_version<K: Resource>(object: &K) -> String {
    object.meta().resource_version.clone().unwrap_or_default()
}

/// Reflects `stream` into `writer` and bumps `trigger` when an object's signature changes,
/// an object goes away, or the initial list completes; `input` says whether the kind is an
/// input of the configuration (see [`Signal`]).
fn drive<K>(
    what: &'static str,
    stream: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
    writer: reflector::store::Writer<K>,
    signature: Signature<K>,
    trigger: Trigger,
    input: bool,
) -> Task
where
    K: Resource + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let mut seen: HashMap<String, String> = HashMap::new();
    Box::pin(
        stream
            .modify(strip_unread_metadata)
            .default_backoff()
            .reflect(writer)
            .for_each(move |event| {
                let changed = match event {
                    Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                        let uid = object.uid().unwrap_or_default();
                        let sig = signature(&object);
                        seen.insert(uid, sig.clone()).as_ref() != Some(&sig)
                    }
                    Ok(watcher::Event::Delete(object)) => {
                        seen.remove(&object.uid().unwrap_or_default());
                        true
                    }
                    Ok(watcher::Event::Init) => false,
                    Ok(watcher::Event::InitDone) => true,
                    Err(error) => {
                        tracing::warn!(%error, what, "watch failed; retrying with backoff");
                        false
                    }
                };
                match (changed, input) {
                    (true, true) => trigger.bump(),
                    (true, false) => trigger.bump_other(),
                    (false, _) => {}
                }
                futures::future::ready(())
            }),
    )
}

/// kubectl's client-side apply keeps a full copy of the object in this annotation.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what Sluice never reads and can be as large as the object itself, before it is cached.
fn strip_unread_metadata<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

/// Sluice's own kinds are read for their spec, status and identity only. Their labels and
/// annotations (Argo CD and Helm add several, the load bench one) are never read, and every
/// non-empty map costs the cache a B-tree node of about half a KiB per object: 10 MiB and
/// more at 10,000 Flows with their Outputs.
fn strip_labels_and_annotations<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.labels = None;
    meta.annotations = None;
}

fn guarded<K>(
    client: &Client,
    what: &'static str,
    trigger: &Trigger,
) -> (Store<DeserializeGuard<K>>, Task)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api: Api<DeserializeGuard<K>> = Api::all(client.clone());
    let (store, writer) = reflector::store();
    let task = drive(
        what,
        watcher(api, config()).modify(strip_labels_and_annotations),
        writer,
        generation::<DeserializeGuard<K>>,
        trigger.clone(),
        true,
    );
    (store, task)
}

/// Starts nothing yet: returns the caches and the futures to spawn. Namespaced children
/// (Secrets, workloads, Services, ...) live only in control namespaces and are watched there
/// (one watch per kind and namespace), so the operator needs no cluster-wide access to them
/// at all; only [`ControlNamespaces::All`] watches them cluster-wide.
pub fn watches(client: &Client, control_namespaces: &ControlNamespaces) -> Watches {
    let trigger = Trigger::default();
    let mut tasks = Vec::new();

    let (loggings, task) = guarded::<Logging>(client, "Logging", &trigger);
    tasks.push(task);
    let (flows, task) = guarded::<Flow>(client, "Flow", &trigger);
    tasks.push(task);
    let (cluster_flows, task) = guarded::<ClusterFlow>(client, "ClusterFlow", &trigger);
    tasks.push(task);
    let (outputs, task) = guarded::<Output>(client, "Output", &trigger);
    tasks.push(task);
    let (cluster_outputs, task) = guarded::<ClusterOutput>(client, "ClusterOutput", &trigger);
    tasks.push(task);

    let (namespaces, writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    tasks.push(drive(
        "Namespace",
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            config(),
        ),
        writer,
        labels::<PartialObjectMeta<Namespace>>,
        trigger.clone(),
        true,
    ));

    let mut children: BTreeMap<ChildKind, Vec<Store<DynamicObject>>> = BTreeMap::new();
    for kind in ChildKind::ALL {
        if kind == ChildKind::Namespace {
            // Namespaces come from the metadata cache above and are never deleted.
            continue;
        }
        let (resource, namespaced) = api_resource(kind);
        let apis: Vec<Api<DynamicObject>> = match control_namespaces {
            ControlNamespaces::Only(namespaces) if namespaced => namespaces
                .iter()
                .map(|ns| Api::namespaced_with(client.clone(), ns, &resource))
                .collect(),
            _ => vec![Api::all_with(client.clone(), &resource)],
        };
        for api in apis {
            let writer = reflector::store::Writer::new(resource.clone());
            children.entry(kind).or_default().push(writer.as_reader());
            tasks.push(drive(
                "child",
                watcher(api, config().labels(&children_selector())),
                writer,
                // Workload status feeds the Logging's conditions: every change counts.
                resource_version::<DynamicObject>,
                trigger.clone(),
                false,
            ));
        }
    }

    let stores = Stores {
        loggings,
        flows,
        cluster_flows,
        outputs,
        cluster_outputs,
        namespaces,
        children,
        control_namespaces: control_namespaces.clone(),
    };
    let ready = {
        let stores = stores.clone();
        Box::pin(async move {
            // A writer is dropped only when its task ends, i.e. at shutdown; readiness then
            // no longer matters.
            let _ = stores.loggings.wait_until_ready().await;
            let _ = stores.flows.wait_until_ready().await;
            let _ = stores.cluster_flows.wait_until_ready().await;
            let _ = stores.outputs.wait_until_ready().await;
            let _ = stores.cluster_outputs.wait_until_ready().await;
            let _ = stores.namespaces.wait_until_ready().await;
            for store in stores.children.values().flatten() {
                let _ = store.wait_until_ready().await;
            }
        }) as Pin<Box<dyn Future<Output = ()> + Send>>
    };
    Watches {
        stores,
        tasks,
        trigger,
        ready,
    }
}

/// A stream yielding once per (coalesced) change signal, adaptively: a change after a
/// quiet period of at least `quiet` yields at once (a single edit waits for nothing); a
/// change within `quiet` of the previous one is part of a burst, and yields once the
/// changes stop for `quiet`, or at the latest [`BURST_LIMIT`] × `quiet` after the burst
/// resumed, so a steady stream of changes cannot postpone reconciles forever.
pub fn changes(
    mut receiver: watch::Receiver<u64>,
    quiet: std::time::Duration,
) -> impl Stream<Item = ()> + Send + 'static {
    use tokio::time::Instant;
    receiver.mark_unchanged();
    let last: Option<Instant> = None;
    futures::stream::unfold((receiver, last), move |(mut receiver, last)| async move {
        receiver.changed().await.ok()?;
        let mut latest = Instant::now();
        let burst = last.is_some_and(|last| latest.duration_since(last) < quiet);
        if burst {
            let deadline = latest + quiet.saturating_mul(BURST_LIMIT);
            loop {
                let until = (latest + quiet).min(deadline);
                match tokio::time::timeout_at(until, receiver.changed()).await {
                    Ok(Ok(())) => latest = Instant::now(),
                    Ok(Err(_)) => return None,
                    Err(_) => break,
                }
                if latest >= deadline {
                    break;
                }
            }
        }
        Some(((), (receiver, Some(latest))))
    })
}

/// How many quiet periods a burst may postpone a reconcile.
pub const BURST_LIMIT: u32 = 8;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn flow(generation: i64, status: Option<&str>) -> DeserializeGuard<Flow> {
        let mut value = serde_json::json!({
            "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Flow",
            "metadata": {"name": "f", "namespace": "a", "uid": "u", "generation": generation,
                         "managedFields": [{"manager": "kubectl"}],
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}",
                                         "team": "a"}},
            "spec": {}
        });
        if let Some(reason) = status {
            value["status"] = serde_json::json!({"problems": [reason]});
        }
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn only_spec_changes_deletions_and_sync_signal() {
        let trigger = Trigger::default();
        let receiver = trigger.subscribe();
        let (store, writer) = reflector::store::<DeserializeGuard<Flow>>();
        let events = vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(flow(1, None))),
            Ok(watcher::Event::InitDone),
            // Sluice's own status write: same generation, no signal.
            Ok(watcher::Event::Apply(flow(1, Some("x")))),
            // A spec change.
            Ok(watcher::Event::Apply(flow(2, Some("x")))),
            Ok(watcher::Event::Delete(flow(2, Some("x")))),
        ];
        drive(
            "Flow",
            futures::stream::iter(events),
            writer,
            generation::<DeserializeGuard<Flow>>,
            trigger.clone(),
            true,
        )
        .await;
        // InitApply, InitDone, the spec change and the deletion.
        assert_eq!(*receiver.borrow(), 4);
        assert_eq!(trigger.count(), 4);
        assert_eq!(trigger.inputs(), 4);
        assert!(trigger.take_oldest().is_some());
        assert!(trigger.take_oldest().is_none(), "taken once");
        assert!(store.state().is_empty());
    }

    #[tokio::test]
    async fn cached_objects_have_no_managed_fields_or_last_applied_copy() {
        let (store, writer) = reflector::store::<DeserializeGuard<Flow>>();
        drive(
            "Flow",
            futures::stream::iter(vec![Ok(watcher::Event::Apply(flow(1, None)))]),
            writer,
            generation::<DeserializeGuard<Flow>>,
            Trigger::default(),
            true,
        )
        .await;
        let cached = store.state();
        assert_eq!(cached.len(), 1);
        assert!(cached[0].meta().managed_fields.is_none());
        let annotations = cached[0].meta().annotations.clone().unwrap_or_default();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["team"]);
    }

    #[test]
    fn sluice_objects_are_cached_without_labels_and_annotations() {
        let mut cached = flow(1, None);
        cached.meta_mut().labels =
            Some([("app.kubernetes.io/instance".to_owned(), "team-a".to_owned())].into());
        strip_labels_and_annotations(&mut cached);
        assert!(cached.meta().labels.is_none());
        assert!(cached.meta().annotations.is_none());
        assert_eq!(
            cached.meta().generation,
            Some(1),
            "identity and generation stay"
        );
        assert_eq!(cached.meta().uid.as_deref(), Some("u"));
        assert!(cached.0.is_ok(), "the spec is untouched");
    }

    /// The first request of every watch: one per task, each waiting for its answer.
    async fn first_requests(control_namespaces: &ControlNamespaces) -> Vec<String> {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let watches = watches(&Client::new(service, "default"), control_namespaces);
        let expected = watches.tasks.len();
        let handles: Vec<_> = watches.tasks.into_iter().map(tokio::spawn).collect();
        let mut paths = Vec::new();
        // Unanswered, so every watch sends exactly its initial list.
        let mut pending = Vec::new();
        while paths.len() < expected {
            let next = tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await;
            let Ok(Some((request, send))) = next else {
                panic!(
                    "only {} of {expected} watches started: {paths:?}",
                    paths.len()
                );
            };
            paths.push(request.uri().path().to_owned());
            pending.push(send);
        }
        for task in handles {
            task.abort();
        }
        paths.sort();
        paths
    }

    #[tokio::test]
    async fn namespaced_children_are_watched_only_in_control_namespaces() {
        let only = ControlNamespaces::Only(vec!["a".to_owned(), "sluice-system".to_owned()]);
        let paths = first_requests(&only).await;
        let secrets: Vec<&String> = paths.iter().filter(|p| p.ends_with("/secrets")).collect();
        assert_eq!(
            secrets,
            [
                "/api/v1/namespaces/a/secrets",
                "/api/v1/namespaces/sluice-system/secrets"
            ]
        );
        // Every namespaced child kind likewise: the per-namespace Role grants those.
        for plural in ["daemonsets", "statefulsets"] {
            let watched: Vec<String> = paths
                .iter()
                .filter(|p| p.ends_with(plural))
                .cloned()
                .collect();
            assert_eq!(
                watched,
                [
                    format!("/apis/apps/v1/namespaces/a/{plural}"),
                    format!("/apis/apps/v1/namespaces/sluice-system/{plural}")
                ]
            );
        }
        for (kind, namespaced) in ChildKind::ALL.map(|k| (k, api_resource(k).1)) {
            let plural = api_resource(kind).0.plural;
            let cluster_wide = paths.iter().any(|p| p.ends_with(&format!("1/{plural}")));
            assert_eq!(cluster_wide, !namespaced, "{kind:?}: {paths:?}");
        }

        let paths = first_requests(&ControlNamespaces::All).await;
        let secrets: Vec<&String> = paths.iter().filter(|p| p.ends_with("/secrets")).collect();
        assert_eq!(secrets, ["/api/v1/secrets"]);
        assert!(paths.contains(&"/apis/apps/v1/daemonsets".to_owned()));
    }

    #[tokio::test]
    async fn a_burst_of_changes_is_one_signal() {
        let (sender, receiver) = watch::channel(0u64);
        let mut signals = Box::pin(changes(receiver, Duration::from_millis(200)));
        for _ in 0..1000 {
            sender.send_modify(|n| *n += 1);
        }
        assert!(signals.next().await.is_some());
        let more = tokio::time::timeout(Duration::from_millis(20), signals.next()).await;
        assert!(more.is_err(), "a second signal for the same burst");
    }

    /// When each signal comes, in milliseconds of a paused clock, for changes at `at`.
    async fn signal_times(at: &[u64], quiet: Duration) -> Vec<u64> {
        let trigger = Trigger::default();
        let start = tokio::time::Instant::now();
        let signals = changes(trigger.subscribe(), quiet);
        let collect = tokio::spawn(async move {
            signals
                .map(move |()| u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX))
                .collect::<Vec<_>>()
                .await
        });
        for &ms in at {
            tokio::time::sleep_until(start + Duration::from_millis(ms)).await;
            trigger.bump();
        }
        tokio::time::sleep_until(start + Duration::from_secs(60)).await;
        drop(trigger);
        collect.await.unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_edit_is_signalled_at_once() {
        let quiet = Duration::from_millis(500);
        assert_eq!(signal_times(&[1_000], quiet).await, [1_000]);
        // Edits further apart than the quiet period: each at once.
        assert_eq!(
            signal_times(&[1_000, 2_000, 2_600], quiet).await,
            [1_000, 2_000, 2_600]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn only_bursts_are_coalesced_and_never_postponed_forever() {
        let quiet = Duration::from_millis(500);
        // The first change of a burst goes at once; the rest wait for a quiet period.
        let burst: Vec<u64> = (0..50).map(|i| 1_000 + i * 10).collect();
        assert_eq!(signal_times(&burst, quiet).await, [1_000, 1_990]);
        // A change every 100 ms for 10 s: a signal at least every BURST_LIMIT quiet periods.
        let steady: Vec<u64> = (0..100).map(|i| 1_000 + i * 100).collect();
        let times = signal_times(&steady, quiet).await;
        assert_eq!(times.first(), Some(&1_000));
        let limit = u64::from(BURST_LIMIT) * 500;
        assert!(
            times.windows(2).all(|w| w[1] - w[0] <= limit + 100),
            "{times:?}"
        );
        assert!(times.len() >= 3, "{times:?}");
        // And once the changes stop, a last signal covers them.
        assert_eq!(times.last(), Some(&(1_000 + 99 * 100 + 500)));
    }

    #[tokio::test]
    async fn sluices_own_children_reconcile_but_are_no_edits() {
        let trigger = Trigger::default();
        let secret = |version: &str| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "main-agent-config", "namespace": "s", "uid": "s1",
                             "resourceVersion": version}
            }))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let (resource, _) = api_resource(ChildKind::Secret);
        drive(
            "child",
            futures::stream::iter(vec![
                Ok(watcher::Event::Apply(secret("1"))),
                Ok(watcher::Event::Apply(secret("2"))),
            ]),
            reflector::store::Writer::new(resource),
            resource_version::<DynamicObject>,
            trigger.clone(),
            false,
        )
        .await;
        assert_eq!(trigger.count(), 2);
        assert_eq!(trigger.inputs(), 0);
        assert!(trigger.take_oldest().is_none());
    }
}
