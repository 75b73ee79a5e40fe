//! What the data plane runs, for the status of Flows, ClusterFlows, Outputs and
//! ClusterOutputs: an object is running when every aggregator pod runs a revision holding it
//! at its current generation and, for a flow, the agents' routing table gives it records
//! (docs/operations.md, "Status conditions").
//!
//! The operator numbers the aggregator candidates it builds and remembers, for each object of
//! the newest one, the first candidate that held its current generation. The reloaders report
//! the revision each pod runs: the lowest number among them confirms every object that entered
//! at or before it. A new operator process starts from what the stored statuses say ran.

use std::collections::{BTreeSet, VecDeque};

use foldhash::{HashMap, HashMapExt};
use kube::Resource;

use super::context::Context;
use super::reconcile::HasObjectStatus;
use super::rollout::{self, Answers, RoutesGate};
use crate::build::Child;
use crate::layout;
use crate::model::{Inventory, Kind, ObjectKey, Pipeline};
use crate::render::edge::flow_route;

/// Candidates remembered: a pod running an older one counts as running an unknown revision.
const REVISIONS_KEPT: usize = 64;
/// `Ready` reason of an object the data plane runs.
pub const RUNNING: &str = "Running";
/// `Ready` reason of an object in the configuration that the data plane does not run yet.
pub const PENDING: &str = "Pending";

/// One object of a candidate, as the snapshot it was built from shows it. Borrowed: at
/// 10,000 flows nearly every object is as the last candidate held it, and copying its uid
/// and route into the bookkeeping on every reconcile cost more than comparing them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held<'a> {
    pub generation: Option<i64>,
    /// The object's uid: with the generation, which version of its spec this is (a
    /// recreated object starts at generation 1 again).
    pub uid: Option<&'a str>,
    /// A flow's route (what agents tag its records with); `None` for outputs.
    pub route: Option<&'a str>,
    /// Its stored status says it ran at this generation (what a new process starts from).
    pub reported_running: bool,
}

impl Held<'_> {
    /// Whether `version` (uid, generation) is this one's.
    fn is_version(&self, version: &(Option<String>, Option<i64>)) -> bool {
        version.0.as_deref() == self.uid && version.1 == self.generation
    }

    fn version(&self) -> (Option<String>, Option<i64>) {
        (self.uid.map(str::to_owned), self.generation)
    }
}

/// One object of the newest candidate, with the number of the first candidate that held its
/// current generation.
#[derive(Debug)]
struct Entry {
    generation: Option<i64>,
    uid: Option<String>,
    route: Option<String>,
    since: u64,
    /// The [`Revisions::builds`] count of the newest candidate holding it.
    seen: u64,
}

impl Entry {
    fn new(held: &Held<'_>, since: u64, seen: u64) -> Self {
        Self {
            generation: held.generation,
            uid: held.uid.map(str::to_owned),
            route: held.route.map(str::to_owned),
            since,
            seen,
        }
    }

    /// Takes `held`'s version, copying only what changed.
    fn take(&mut self, held: &Held<'_>) {
        self.generation = held.generation;
        if self.uid.as_deref() != held.uid {
            self.uid = held.uid.map(str::to_owned);
        }
        if self.route.as_deref() != held.route {
            self.route = held.route.map(str::to_owned);
        }
    }

    fn is_version(&self, version: &(Option<String>, Option<i64>)) -> bool {
        version.0 == self.uid && version.1 == self.generation
    }
}

/// One Logging's candidates and what runs of them.
#[derive(Debug, Default)]
pub struct Revisions {
    /// Candidates built, oldest first, with the number each got.
    order: VecDeque<(String, u64)>,
    next: u64,
    /// Objects of the newest candidate, with the number of the first candidate that held
    /// their current generation.
    objects: HashMap<ObjectKey, Entry>,
    /// Candidates recorded by [`Revisions::built`], the newest one's count marking the
    /// objects it holds.
    builds: u64,
    /// Objects known to run everywhere, at the generation confirmed.
    running: HashMap<ObjectKey, Option<i64>>,
    /// The version (uid, generation) of each object that last ran everywhere, kept after it
    /// leaves the candidate: an Output no flow uses for a while that comes back unchanged
    /// ran before, so a rejection naming no Sluice id must not blame it.
    ran: HashMap<ObjectKey, (Option<String>, Option<i64>)>,
}

impl Revisions {
    /// Records the candidate just built and the objects it holds.
    pub fn built<'k>(
        &mut self,
        revision: &str,
        objects: impl IntoIterator<Item = (&'k ObjectKey, Held<'k>)>,
    ) {
        let number = match self.order.back() {
            Some((last, number)) if last == revision => *number,
            _ => {
                let number = self.next;
                self.next += 1;
                self.order.retain(|(known, _)| known != revision);
                self.order.push_back((revision.to_owned(), number));
                while self.order.len() > REVISIONS_KEPT {
                    self.order.pop_front();
                }
                number
            }
        };
        // Updated in place: at 10,000 flows nearly every object is as the last candidate
        // held it, and building the map afresh on every reconcile cost more than the rest.
        self.builds += 1;
        let seen = self.builds;
        for (key, held) in objects {
            if held.reported_running && !self.running.contains_key(key) {
                self.running.insert(key.clone(), held.generation);
                self.ran.insert(key.clone(), held.version());
            }
            if self
                .ran
                .get(key)
                .is_some_and(|version| !held.is_version(version))
            {
                self.ran.remove(key);
            }
            match self.objects.get_mut(key) {
                Some(entry) if entry.seen != seen => {
                    if entry.generation != held.generation {
                        entry.since = number;
                    }
                    entry.take(&held);
                    entry.seen = seen;
                }
                // Twice in one candidate: counts from this one, as a new object.
                Some(entry) => *entry = Entry::new(&held, number, seen),
                None => {
                    self.objects
                        .insert(key.clone(), Entry::new(&held, number, seen));
                }
            }
        }
        self.objects.retain(|_, entry| entry.seen == seen);
        let objects = &self.objects;
        self.running.retain(|key, _| objects.contains_key(key));
    }

    /// The number of the oldest revision among those the pods run; `None` when a pod runs
    /// one this process did not build (or reports none).
    pub fn oldest_running(&self, revisions: &[Option<&str>]) -> Option<u64> {
        let numbers = revisions.iter().map(|revision| {
            let revision = (*revision)?;
            self.order
                .iter()
                .find(|(known, _)| known == revision)
                .map(|(_, number)| *number)
        });
        numbers.collect::<Option<Vec<u64>>>()?.into_iter().min()
    }

    /// Every object that entered at or before revision `oldest` runs, unless its route is
    /// withheld from the agents.
    pub fn confirm(&mut self, oldest: u64, withheld: &BTreeSet<String>) {
        for (key, entry) in &self.objects {
            let routed = entry
                .route
                .as_ref()
                .is_none_or(|route| !withheld.contains(route));
            if entry.since <= oldest && routed {
                self.running.insert(key.clone(), entry.generation);
                self.ran
                    .insert(key.clone(), (entry.uid.clone(), entry.generation));
            }
        }
    }

    pub fn is_running(&self, key: &ObjectKey, generation: Option<i64>) -> bool {
        self.running.get(key) == Some(&generation)
    }

    /// Whether the newest candidate holds the object.
    pub fn holds(&self, key: &ObjectKey) -> bool {
        self.objects.contains_key(key)
    }

    /// Objects of the newest candidate not known to run at their generation, nor to have run
    /// in this version before: what it added or changed compared to what runs or ran.
    pub fn unconfirmed(&self) -> Vec<ObjectKey> {
        let mut keys: Vec<ObjectKey> = self
            .objects
            .iter()
            .filter(|(key, entry)| self.is_unconfirmed(key, entry))
            .map(|(key, _)| key.clone())
            .collect();
        keys.sort();
        keys
    }

    /// Whether [`Revisions::unconfirmed`] holds anything.
    pub fn any_unconfirmed(&self) -> bool {
        self.objects
            .iter()
            .any(|(key, entry)| self.is_unconfirmed(key, entry))
    }

    fn is_unconfirmed(&self, key: &ObjectKey, entry: &Entry) -> bool {
        !self.is_running(key, entry.generation)
            && self
                .ran
                .get(key)
                .is_none_or(|version| !entry.is_version(version))
    }
}

/// How an object in use figures in the data plane of the Loggings using it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Every Logging using it runs it at its current generation.
    Running,
    /// Some Logging does not run this generation yet.
    Pending,
    /// None of its Loggings built a configuration bundle in this process yet (or ever, with
    /// the canned builds of tests): nothing to wait for.
    NotTracked,
}

/// The version (generation, uid) and stored verdict of every Flow and Output in the snapshot
/// a candidate was built from. The caches may hold a later edit by the time the candidate is
/// recorded (after its apply), which that candidate does not hold.
type SnapshotVersions<'a> =
    HashMap<(Kind, Option<&'a str>, &'a str), (Option<i64>, Option<&'a str>, bool)>;

fn snapshot_versions<'a>(inventory: &'a Inventory<'a>) -> SnapshotVersions<'a> {
    fn add<'a, K>(versions: &mut SnapshotVersions<'a>, kind: Kind, objects: &[&'a K])
    where
        K: Resource + HasObjectStatus,
    {
        for object in objects {
            let meta = object.meta();
            let (Some(name), generation) = (meta.name.as_deref(), meta.generation) else {
                continue;
            };
            versions.insert(
                (kind, meta.namespace.as_deref(), name),
                (
                    generation,
                    meta.uid.as_deref(),
                    reported_running(object.object_status(), generation),
                ),
            );
        }
    }
    let mut versions = HashMap::with_capacity(
        inventory.flows.len()
            + inventory.cluster_flows.len()
            + inventory.outputs.len()
            + inventory.cluster_outputs.len(),
    );
    add(&mut versions, Kind::Flow, &inventory.flows);
    add(&mut versions, Kind::ClusterFlow, &inventory.cluster_flows);
    add(&mut versions, Kind::Output, &inventory.outputs);
    add(
        &mut versions,
        Kind::ClusterOutput,
        &inventory.cluster_outputs,
    );
    versions
}

/// The stored status says the object ran at `generation`.
pub fn reported_running(
    status: Option<&crate::api::ObjectStatus>,
    generation: Option<i64>,
) -> bool {
    status.into_iter().flat_map(|s| &s.conditions).any(|c| {
        c.type_ == super::status::READY
            && c.status == "True"
            && c.reason == RUNNING
            && c.observed_generation == generation
    })
}

fn held<'a>(versions: &SnapshotVersions<'a>, key: &ObjectKey, route: Option<&'a str>) -> Held<'a> {
    let (generation, uid, reported_running) = versions
        .get(&(key.kind, key.namespace.as_deref(), key.name.as_str()))
        .copied()
        .unwrap_or((None, None, false));
    Held {
        generation,
        uid,
        route,
        reported_running,
    }
}

/// Records the aggregator candidate just built from `inventory`, with every Flow and Output
/// it holds at the version it holds.
pub fn record_candidate(
    ctx: &Context,
    inventory: &Inventory<'_>,
    pipeline: &Pipeline,
    children: &[Child],
) {
    let Some(revision) =
        rollout::candidate_revision(pipeline, layout::AGGREGATOR_COMPONENT, children)
    else {
        return;
    };
    let versions = snapshot_versions(inventory);
    let flows = pipeline.flows.iter().map(|flow| {
        let route = flow_route(flow.label());
        (&flow.key, held(&versions, &flow.key, Some(route)))
    });
    let outputs = pipeline
        .outputs
        .keys()
        .map(|key| (key, held(&versions, key, None)));
    let objects: Vec<(&ObjectKey, Held<'_>)> = flows.chain(outputs).collect();
    ctx.memory()
        .data_plane
        .entry(pipeline.logging.clone())
        .or_default()
        .built(&revision, objects);
}

/// How soon to ask the aggregator pods again while an object waits for them and none
/// answered: they may be restarting, or the operator may not reach them at all.
pub const UNANSWERED_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Asks the aggregator pods what they run (unless everything is known to run already) and
/// confirms what runs everywhere. While something still waits for them, when to ask again:
/// soon when some pod answered, less often when none did (a pass whose question went
/// unanswered must still come back, or its objects stay `Pending` until the resync).
pub async fn observe(
    ctx: &Context,
    pipeline: &Pipeline,
    gate: &RoutesGate,
    answers: &mut Answers,
) -> Option<std::time::Duration> {
    let waiting = ctx
        .memory()
        .data_plane
        .get(&pipeline.logging)
        .is_some_and(Revisions::any_unconfirmed);
    if !waiting {
        return None;
    }
    let expected = rollout::aggregator_pods(ctx, &pipeline.names);
    let statuses = answers
        .of(ctx, &pipeline.names, layout::AGGREGATOR_COMPONENT)
        .await;
    let reachable = statuses.iter().any(Result::is_ok);
    let running: Vec<Option<&str>> = statuses
        .iter()
        .map(|status| status.as_ref().ok().and_then(|s| s.running.as_deref()))
        .collect();
    let mut memory = ctx.memory();
    let revisions = memory.data_plane.get_mut(&pipeline.logging)?;
    if running.len() >= expected.max(1)
        && let Some(oldest) = revisions.oldest_running(&running)
    {
        revisions.confirm(oldest, &gate.withheld);
    }
    if !revisions.any_unconfirmed() {
        None
    } else if reachable {
        Some(rollout::PENDING_RECHECK)
    } else {
        Some(UNANSWERED_RECHECK)
    }
}

/// What a rejected aggregator revision added or changed compared to what runs.
pub fn unconfirmed(ctx: &Context, logging: &str) -> Vec<ObjectKey> {
    ctx.memory()
        .data_plane
        .get(logging)
        .map(Revisions::unconfirmed)
        .unwrap_or_default()
}

/// Whether the Loggings using an object (`loggings`, comma-separated) run it at
/// `generation`.
pub fn verdict(ctx: &Context, loggings: &str, key: &ObjectKey, generation: Option<i64>) -> Verdict {
    let memory = ctx.memory();
    let mut verdict = Verdict::NotTracked;
    for logging in loggings.split(", ") {
        let Some(revisions) = memory.data_plane.get(logging) else {
            continue;
        };
        // Its Logging built candidates but not one with it yet: another Logging's reconcile
        // saw it first (each writes every object's status). Its Logging's next candidate
        // holds it.
        if !revisions.holds(key) || !revisions.is_running(key, generation) {
            return Verdict::Pending;
        }
        verdict = Verdict::Running;
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(name: &str) -> ObjectKey {
        ObjectKey::namespaced(Kind::Flow, "team-a", name)
    }

    fn held(generation: i64, route: &str) -> Held<'_> {
        Held {
            generation: Some(generation),
            uid: Some(route),
            route: Some(route),
            reported_running: false,
        }
    }

    #[test]
    fn an_object_runs_once_every_pod_runs_a_revision_holding_its_generation() {
        let mut revisions = Revisions::default();
        revisions.built("r1", [(&flow("a"), held(1, "flow-a"))]);
        revisions.built(
            "r2",
            [
                (&flow("a"), held(1, "flow-a")),
                (&flow("b"), held(1, "flow-b")),
            ],
        );
        let none = BTreeSet::new();
        // One pod still runs r1: a runs, b does not yet.
        let oldest = revisions.oldest_running(&[Some("r2"), Some("r1")]);
        assert_eq!(oldest, Some(0));
        revisions.confirm(0, &none);
        assert!(revisions.is_running(&flow("a"), Some(1)));
        assert!(!revisions.is_running(&flow("b"), Some(1)));
        assert_eq!(revisions.unconfirmed(), vec![flow("b")]);
        // A pod running a revision this process never built confirms nothing.
        assert_eq!(revisions.oldest_running(&[Some("r2"), Some("r0")]), None);
        assert_eq!(revisions.oldest_running(&[Some("r2"), None]), None);
        // Both run r2; b's route is still withheld from the agents: not running.
        let withheld = BTreeSet::from(["flow-b".to_owned()]);
        revisions.confirm(1, &withheld);
        assert!(!revisions.is_running(&flow("b"), Some(1)));
        revisions.confirm(1, &none);
        assert!(revisions.is_running(&flow("b"), Some(1)));
        // An edit: the new generation waits for the revision holding it.
        revisions.built(
            "r3",
            [
                (&flow("a"), held(2, "flow-a")),
                (&flow("b"), held(1, "flow-b")),
            ],
        );
        assert_eq!(revisions.unconfirmed(), vec![flow("a")]);
        assert!(!revisions.is_running(&flow("a"), Some(2)));
    }

    #[test]
    fn a_revision_built_again_counts_from_its_newest_build() {
        let mut revisions = Revisions::default();
        revisions.built("r1", [(&flow("a"), held(1, "flow-a"))]);
        revisions.built("r2", []);
        // Recreated at generation 1: the same content as r1 again.
        revisions.built("r1", [(&flow("a"), held(1, "flow-a"))]);
        let oldest = revisions.oldest_running(&[Some("r1")]);
        revisions.confirm(oldest.unwrap_or_default(), &BTreeSet::new());
        assert!(revisions.is_running(&flow("a"), Some(1)));
    }

    /// The objects are kept from one candidate to the next: one that left a candidate and
    /// came back counts from the candidate it came back in, not from the first that held it.
    #[test]
    fn an_object_back_in_a_later_candidate_counts_from_that_one() {
        let mut revisions = Revisions::default();
        revisions.built("r1", [(&flow("a"), held(1, "flow-a"))]);
        revisions.built("r2", [(&flow("b"), held(1, "flow-b"))]);
        revisions.built(
            "r3",
            [
                (&flow("a"), held(1, "flow-a")),
                (&flow("b"), held(1, "flow-b")),
            ],
        );
        // Every pod runs r2: b entered there; a, back in r3 only, waits.
        revisions.confirm(1, &BTreeSet::new());
        assert!(revisions.is_running(&flow("b"), Some(1)));
        assert!(!revisions.is_running(&flow("a"), Some(1)));
        assert_eq!(revisions.unconfirmed(), vec![flow("a")]);
        assert!(revisions.any_unconfirmed());
        revisions.confirm(2, &BTreeSet::new());
        assert!(!revisions.any_unconfirmed());
    }

    #[test]
    fn a_new_process_trusts_what_stored_statuses_say_ran() {
        let mut revisions = Revisions::default();
        let mut reported = held(3, "flow-a");
        reported.reported_running = true;
        revisions.built(
            "r9",
            [(&flow("a"), reported), (&flow("b"), held(1, "flow-b"))],
        );
        assert!(revisions.is_running(&flow("a"), Some(3)));
        assert_eq!(revisions.unconfirmed(), vec![flow("b")]);
        // Removed from the candidate: forgotten.
        revisions.built("r10", [(&flow("b"), held(1, "flow-b"))]);
        assert!(!revisions.holds(&flow("a")));
        assert!(!revisions.is_running(&flow("a"), Some(3)));
    }

    /// An object that ran, left the candidate (an Output no flow used for a while) and came
    /// back unchanged is not what a rejected revision added: only the new flow is. The same
    /// name recreated (another uid) is.
    #[test]
    fn an_object_back_unchanged_is_not_what_a_revision_added() {
        let mut revisions = Revisions::default();
        let output = ObjectKey::namespaced(Kind::Output, "team-a", "es");
        let output_held = |uid| Held {
            generation: Some(1),
            uid: Some(uid),
            route: None,
            reported_running: false,
        };
        revisions.built(
            "r1",
            [
                (&flow("a"), held(1, "flow-a")),
                (&output, output_held("u1")),
            ],
        );
        revisions.confirm(0, &BTreeSet::new());
        revisions.built("r2", []);
        revisions.confirm(1, &BTreeSet::new());
        revisions.built(
            "r3",
            [
                (&flow("b"), held(1, "flow-b")),
                (&output, output_held("u1")),
            ],
        );
        assert!(
            !revisions.is_running(&output, Some(1)),
            "not running again yet"
        );
        assert_eq!(revisions.unconfirmed(), vec![flow("b")]);
        revisions.built(
            "r4",
            [
                (&flow("b"), held(1, "flow-b")),
                (&output, output_held("u2")),
            ],
        );
        let mut expected = vec![flow("b"), output];
        expected.sort();
        assert_eq!(revisions.unconfirmed(), expected);
    }
}
