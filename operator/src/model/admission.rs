//! Which Loggings are resolved at all, decided before anything is resolved: a Logging that
//! is refused (its control namespace not allowed, invalid, or claiming what an older Logging
//! holds) contributes nothing to resolution. No Secret is read for it, no Flow, Output or
//! cluster kind gets a problem or a user from it, and a working Logging cannot tell it exists.
//!
//! Claims are what two Loggings cannot share: the control namespace (every child's name is
//! derived from the Logging's name within it, and its Secrets are readable by ClusterOutputs
//! of that Logging) and the agents' host directory (tail positions and buffers on every
//! node). The older Logging keeps a claim: by `creationTimestamp`, then name, so a newcomer
//! can never take a working pipeline out of service, and the order does not change while
//! both exist.

use std::collections::BTreeMap;
use std::fmt;

use crate::api::Logging;
use crate::layout::Names;

use super::validate::logging::validate_logging;
use super::{Kind, ObjectKey, Problem, name_of, problem};

/// Where Loggings may put their control namespace: the operator's `--control-namespaces`.
/// The CLI, which reads files, allows any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ControlNamespaces {
    /// These namespaces only, one Secret watch each (a RoleBinding each).
    Only(Vec<String>),
    /// Any namespace: one cluster-wide Secret watch (a ClusterRoleBinding).
    #[default]
    All,
}

impl ControlNamespaces {
    /// Whether a Logging may use `namespace` as its control namespace.
    pub fn allows(&self, namespace: &str) -> bool {
        match self {
            Self::Only(namespaces) => namespaces.iter().any(|n| n == namespace),
            Self::All => true,
        }
    }
}

impl fmt::Display for ControlNamespaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Only(namespaces) => f.write_str(&namespaces.join(", ")),
            Self::All => f.write_str("*"),
        }
    }
}

/// The outcome of [`admit`].
#[derive(Clone, Debug, Default)]
pub struct Admission<'a> {
    /// The Loggings that are resolved, sorted by name.
    pub admitted: Vec<&'a Logging>,
    /// Every Logging's own problems: why the refused ones are refused, and warnings.
    pub problems: BTreeMap<ObjectKey, Vec<Problem>>,
}

impl Admission<'_> {
    /// Whether the Logging named `name` is resolved.
    pub fn admits(&self, name: &str) -> bool {
        self.admitted
            .binary_search_by(|l| name_of(&l.metadata).cmp(name))
            .is_ok()
    }
}

/// The agents' host directory of a Logging, as build::workloads mounts it.
fn state_host_path(logging: &Logging) -> String {
    let names = Names::new(name_of(&logging.metadata), &logging.spec.control_namespace);
    names.agent_state_host_path(&logging.spec)
}

/// Whether two host directories overlap: the same, or one inside the other.
fn overlapping(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
    let inside = |inner: &str, outer: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
    };
    a == b || inside(a, b) || inside(b, a)
}

/// The order in which Loggings take their claims: oldest first, then by name. A Logging
/// without `creationTimestamp` (read from a file) comes after every one with it.
fn claim_order(logging: &Logging) -> impl Ord + '_ {
    let created = logging.metadata.creation_timestamp.as_ref();
    (created.is_none(), created, name_of(&logging.metadata))
}

/// What the Loggings admitted so far (and the invalid ones, see [`admit`]) hold.
#[derive(Default)]
struct Claims<'a> {
    control_namespaces: BTreeMap<&'a str, &'a str>,
    state_paths: Vec<(String, &'a str)>,
}

impl<'a> Claims<'a> {
    /// Problems for every claim of `logging` an earlier Logging holds.
    fn conflicts(&self, logging: &'a Logging) -> Vec<Problem> {
        let mut problems = Vec::new();
        let namespace = logging.spec.control_namespace.as_str();
        if let Some(holder) = self.control_namespaces.get(namespace) {
            problems.push(problem(
                "ControlNamespaceInUse",
                "spec.controlNamespace",
                format!(
                    "namespace {namespace:?} is already the control namespace of Logging {holder:?}, which is older and keeps it; nothing of this Logging is applied"
                ),
            ));
        }
        let path = state_host_path(logging);
        if let Some((held, holder)) = self.state_paths.iter().find(|(p, _)| overlapping(p, &path)) {
            problems.push(problem(
                "StateHostPathInUse",
                "spec.agent.stateHostPath",
                format!(
                    "host directory {path:?} overlaps {held:?}, where the agents of Logging {holder:?} (older) keep tail positions and buffers; agents of two Loggings on one node would corrupt each other's; nothing of this Logging is applied"
                ),
            ));
        }
        problems
    }

    fn take(&mut self, logging: &'a Logging) {
        let name = name_of(&logging.metadata);
        self.control_namespaces
            .insert(logging.spec.control_namespace.as_str(), name);
        self.state_paths.push((state_host_path(logging), name));
    }
}

/// Decides which Loggings are resolved. In claim order (oldest first), each Logging is
/// checked on its own, against `allowed`, and against the claims of the Loggings before it.
/// An invalid Logging still holds its claims: what it applied while it was valid keeps
/// running there, and fixing it must not find a newcomer in its place. A Logging refused
/// for its control namespace or a conflict holds none.
pub fn admit<'a>(loggings: &[&'a Logging], allowed: &ControlNamespaces) -> Admission<'a> {
    let mut ordered = loggings.to_vec();
    ordered.sort_by(|a, b| claim_order(a).cmp(&claim_order(b)));
    let mut claims = Claims::default();
    let mut admission = Admission::default();
    for logging in ordered {
        let name = name_of(&logging.metadata);
        let mut problems = validate_logging(name, &logging.spec);
        let namespace = &logging.spec.control_namespace;
        if !allowed.allows(namespace) {
            problems.push(problem(
                "ControlNamespaceNotAllowed",
                "spec.controlNamespace",
                format!(
                    "{namespace} is not one of the operator's --control-namespaces ({allowed}); nothing is applied"
                ),
            ));
        } else {
            let conflicts = claims.conflicts(logging);
            if conflicts.is_empty() {
                claims.take(logging);
            }
            problems.extend(conflicts);
        }
        if problems.iter().all(Problem::is_warning) {
            admission.admitted.push(logging);
        }
        if !problems.is_empty() {
            admission
                .problems
                .insert(ObjectKey::cluster(Kind::Logging, name), problems);
        }
    }
    admission
        .admitted
        .sort_by(|a, b| name_of(&a.metadata).cmp(name_of(&b.metadata)));
    admission
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_directories_overlap_when_equal_or_nested() {
        assert!(overlapping("/var/lib/sluice/a", "/var/lib/sluice/a/"));
        assert!(overlapping("/var/lib/sluice", "/var/lib/sluice/a"));
        assert!(overlapping("/var/lib/sluice/a/x", "/var/lib/sluice/a"));
        assert!(!overlapping("/var/lib/sluice/a", "/var/lib/sluice/ab"));
        assert!(!overlapping("/var/lib/sluice/a", "/var/lib/sluice/b"));
    }
}
