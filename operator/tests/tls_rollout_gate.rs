//! CA rotation steps wait until every pod runs the material of the current step, so no
//! aggregator is handed leaves from a CA its agents do not trust yet (and the old CA is not
//! dropped while pods still present leaves signed by it).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use sluice::api::TlsSpec;
use sluice::layout::Names;
use sluice::pki::{self, MAX_ROLLOUT_WAIT, PkiPlan, PkiRequest, Rollout};

fn tls() -> TlsSpec {
    TlsSpec {
        ca_validity: Some("1000h".to_owned()),
        leaf_validity: Some("100h".to_owned()),
        ..TlsSpec::default()
    }
}

fn plan(existing: &BTreeMap<String, Secret>, now: jiff::Timestamp, rollout: Rollout) -> PkiPlan {
    let names = Names::new("main", "logging");
    pki::plan(&PkiRequest {
        names: &names,
        tls: &tls(),
        now,
        existing,
        rollout,
    })
    .unwrap()
}

fn stored(plan: &PkiPlan) -> BTreeMap<String, Secret> {
    plan.secrets
        .iter()
        .map(|s| (s.metadata.name.clone().unwrap(), s.clone()))
        .collect()
}

fn phase(plan: &PkiPlan) -> &str {
    plan.certificates.rotation_phase.as_deref().unwrap()
}

fn settled(hash: &str) -> Rollout {
    Rollout::Observed {
        settled_tls_hash: Some(hash.to_owned()),
    }
}

const ROLLING: Rollout = Rollout::Observed {
    settled_tls_hash: None,
};

/// A plan that has just entered `Introducing`, and the instant it did.
fn introducing() -> (PkiPlan, jiff::Timestamp) {
    let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let first = plan(&BTreeMap::new(), start, Rollout::Unobserved);
    // Past two thirds of the CA's 1000 hours.
    let due = start + jiff::SignedDuration::from_hours(700);
    let rotating = plan(&stored(&first), due, settled(&first.material_hash));
    assert_eq!(phase(&rotating), "Introducing");
    (rotating, due)
}

#[test]
fn a_step_waits_while_the_pods_roll_out() {
    let (introducing, since) = introducing();
    let later = since + jiff::SignedDuration::from_mins(10);
    let waiting = plan(&stored(&introducing), later, ROLLING);
    assert_eq!(phase(&waiting), "Introducing");
    assert_eq!(
        waiting.secrets, introducing.secrets,
        "nothing changes while waiting"
    );
    assert_eq!(
        waiting.next_change,
        Some(later + jiff::SignedDuration::from_secs(30))
    );

    let stale = plan(&stored(&introducing), later, settled("an-older-hash"));
    assert_eq!(
        phase(&stale),
        "Introducing",
        "pods on older material do not count"
    );
}

#[test]
fn a_step_proceeds_once_every_pod_runs_the_current_material() {
    let (introducing, since) = introducing();
    let later = since + jiff::SignedDuration::from_mins(10);
    let reissuing = plan(
        &stored(&introducing),
        later,
        settled(&introducing.material_hash),
    );
    assert_eq!(phase(&reissuing), "Reissuing");

    let retiring_early = plan(
        &stored(&reissuing),
        later + jiff::SignedDuration::from_mins(10),
        settled(&introducing.material_hash),
    );
    assert_eq!(
        phase(&retiring_early),
        "Reissuing",
        "the old CA stays until pods present new leaves"
    );
    let retiring = plan(
        &stored(&reissuing),
        later + jiff::SignedDuration::from_mins(10),
        settled(&reissuing.material_hash),
    );
    assert_eq!(phase(&retiring), "Retiring");
}

#[test]
fn the_propagation_delay_still_applies_to_settled_pods() {
    let (introducing, since) = introducing();
    let soon = since + jiff::SignedDuration::from_mins(1);
    let early = plan(
        &stored(&introducing),
        soon,
        settled(&introducing.material_hash),
    );
    assert_eq!(phase(&early), "Introducing");
}

#[test]
fn a_rollout_that_never_finishes_cannot_stall_the_rotation_forever() {
    let (introducing, since) = introducing();
    let almost = plan(
        &stored(&introducing),
        since + MAX_ROLLOUT_WAIT - jiff::SignedDuration::from_secs(1),
        ROLLING,
    );
    assert_eq!(phase(&almost), "Introducing");
    let after = plan(&stored(&introducing), since + MAX_ROLLOUT_WAIT, ROLLING);
    assert_eq!(phase(&after), "Reissuing");
}

#[test]
fn offline_renders_follow_the_delay_alone() {
    let (introducing, since) = introducing();
    let later = since + jiff::SignedDuration::from_mins(10);
    assert_eq!(
        phase(&plan(&stored(&introducing), later, Rollout::Unobserved)),
        "Reissuing"
    );
}
