//! The planner over simulated years: renewals, the three-phase CA rotation, and the
//! invariant that no pod ever stops trusting its peer, even while Secrets propagate.

mod tls_support;

use std::collections::BTreeMap;

use sluice::api::TlsSpec;
use sluice::layout::{
    CA_CERT_KEY, CA_ROTATION_PHASE_ANNOTATION, NEXT_CA_CERT_KEY, TLS_CERT_KEY, TLS_KEY_KEY,
};
use sluice::pki::{PROPAGATION_DELAY, verify};
use tls_support::{Peer, Step, names, plan_at, secret, simulate, start, stored, value};

const DAY: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

fn years(count: i64) -> jiff::SignedDuration {
    DAY * (365 * count as i32)
}

/// Both pods may hold the previous or the new material while a change propagates: every mix
/// must verify, at the instant of the change and until the propagation delay has passed.
fn assert_peers_trust_each_other(before: &Step, after: &Step) {
    let host = names().aggregator_host();
    let aggregators = [
        Peer::aggregator(&before.plan),
        Peer::aggregator(&after.plan),
    ];
    let agents = [Peer::agent(&before.plan), Peer::agent(&after.plan)];
    for at in [after.at, after.at + PROPAGATION_DELAY] {
        for aggregator in &aggregators {
            for agent in &agents {
                verify::verify_client(&aggregator.bundle, &agent.chain, at).unwrap_or_else(|e| {
                    panic!(
                        "{at} ({} -> {}): aggregator rejects agent: {e}",
                        before.phase(),
                        after.phase()
                    )
                });
                verify::verify_server(&agent.bundle, &aggregator.chain, &host, at).unwrap_or_else(
                    |e| {
                        panic!(
                            "{at} ({} -> {}): agent rejects aggregator: {e}",
                            before.phase(),
                            after.phase()
                        )
                    },
                );
            }
        }
    }
    // Right before the next planned change, the new material alone must still be valid.
    if let Some(next) = after.plan.next_change {
        let at = next - jiff::SignedDuration::from_secs(1);
        verify::verify_client(&aggregators[1].bundle, &agents[1].chain, at).unwrap();
        verify::verify_server(&agents[1].bundle, &aggregators[1].chain, &host, at).unwrap();
    }
}

fn assert_invariants(steps: &[Step]) {
    let names = names();
    for pair in steps.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert_peers_trust_each_other(before, after);
        for leaf in [names.aggregator_tls_secret(), names.agent_tls_secret()] {
            let (old, new) = (secret(&before.plan, &leaf), secret(&after.plan, &leaf));
            if value(old, TLS_CERT_KEY) != value(new, TLS_CERT_KEY) {
                assert_ne!(
                    value(old, TLS_KEY_KEY),
                    value(new, TLS_KEY_KEY),
                    "{leaf} renewed at {} without a new key",
                    after.at
                );
            }
        }
        let mounted_changed = [names.aggregator_tls_secret(), names.agent_tls_secret()]
            .iter()
            .any(|leaf| secret(&before.plan, leaf).data != secret(&after.plan, leaf).data);
        assert_eq!(
            mounted_changed,
            before.plan.material_hash != after.plan.material_hash,
            "material hash must change exactly when mounted material changes ({})",
            after.at
        );
    }
}

/// Phases in order of occurrence, consecutive repeats collapsed, with when each began.
fn phase_changes(steps: &[Step]) -> Vec<(String, jiff::Timestamp)> {
    let mut changes: Vec<(String, jiff::Timestamp)> = Vec::new();
    for step in steps {
        if changes.last().map(|(phase, _)| phase.as_str()) != Some(step.phase()) {
            changes.push((step.phase().to_owned(), step.at));
        }
    }
    changes
}

fn assert_rotations(changes: &[(String, jiff::Timestamp)], rotations: usize) {
    let expected: Vec<&str> = std::iter::once("Stable")
        .chain(
            std::iter::repeat_n(
                ["Introducing", "Reissuing", "Retiring", "Stable"],
                rotations,
            )
            .flatten(),
        )
        .collect();
    let phases: Vec<&str> = changes.iter().map(|(phase, _)| phase.as_str()).collect();
    assert_eq!(phases, expected);
    for pair in changes.windows(2) {
        if pair[0].0 != "Stable" {
            assert_eq!(
                pair[1].1.duration_since(pair[0].1),
                PROPAGATION_DELAY,
                "{} lasted the wrong time",
                pair[0].0
            );
        }
    }
}

#[test]
fn two_years_with_defaults_renew_leaves_and_keep_the_ca() {
    let tls = TlsSpec::default();
    let steps = simulate(&tls, start(), start() + years(2), BTreeMap::new());
    assert_invariants(&steps);
    assert_rotations(&phase_changes(&steps), 0);
    // 90-day leaves renewed at 66 %: every ~59.4 days, so 12 renewals in two years.
    let serials: std::collections::BTreeSet<_> = steps
        .iter()
        .map(|step| step.plan.certificates.client.clone().unwrap().serial)
        .collect();
    assert_eq!(
        serials.len(),
        13,
        "one initial client certificate plus 12 renewals"
    );
    let cas: std::collections::BTreeSet<_> = steps
        .iter()
        .map(|step| step.plan.certificates.ca.clone().unwrap().serial)
        .collect();
    assert_eq!(cas.len(), 1);
}

#[test]
fn two_years_with_defaults_across_the_ca_renewal_point() {
    let tls = TlsSpec::default();
    // A CA minted three years ago: with 5-year CAs renewed at 66 %, its turn comes at 3.3 years.
    let minted = plan_at(&names(), &tls, start(), &BTreeMap::new());
    let from = start() + years(3);
    let steps = simulate(&tls, from, from + years(2), stored(&minted));
    assert_invariants(&steps);
    let changes = phase_changes(&steps);
    assert_rotations(&changes, 1);
    let introduced = changes[1].1;
    let expected = start() - jiff::SignedDuration::from_mins(5)
        + jiff::SignedDuration::from_secs((years(5).as_secs() + 300) * 66 / 100);
    assert!(
        introduced.duration_since(expected).as_secs().abs() <= 1,
        "introduced at {introduced}, expected at 66 % of the CA's life ({expected})"
    );
}

#[test]
fn short_lived_cas_rotate_repeatedly() {
    let tls = TlsSpec {
        ca_validity: Some("2160h".to_owned()),
        leaf_validity: Some("720h".to_owned()),
        ..TlsSpec::default()
    };
    let steps = simulate(&tls, start(), start() + years(2), BTreeMap::new());
    assert_invariants(&steps);
    // 90-day CAs renewed at 66 % rotate every ~59.4 days: 12 times in two years.
    assert_rotations(&phase_changes(&steps), 12);
}

#[test]
fn trust_bundle_overlaps_during_rotation() {
    let tls = TlsSpec {
        ca_validity: Some("2160h".to_owned()),
        ..TlsSpec::default()
    };
    let steps = simulate(&tls, start(), start() + DAY * 70, BTreeMap::new());
    let names = names();
    let bundle_sizes: Vec<(String, usize)> = steps
        .iter()
        .map(|step| {
            let bundle = value(secret(&step.plan, &names.agent_tls_secret()), CA_CERT_KEY);
            let count = sluice::pki::inspect::certificates(&bundle).unwrap().len();
            (step.phase().to_owned(), count)
        })
        .collect();
    for (phase, count) in &bundle_sizes {
        let expected = match phase.as_str() {
            "Introducing" | "Reissuing" => 2,
            _ => 1,
        };
        assert_eq!(*count, expected, "bundle size in phase {phase}");
    }
    assert!(bundle_sizes.iter().any(|(phase, _)| phase == "Reissuing"));
}

#[test]
fn replanning_when_nothing_is_due_is_byte_identical() {
    let tls = TlsSpec::default();
    let first = plan_at(&names(), &tls, start(), &BTreeMap::new());
    let again = plan_at(&names(), &tls, start() + DAY, &stored(&first));
    assert_eq!(again.secrets, first.secrets);
    let json = |plan: &sluice::pki::PkiPlan| serde_json::to_vec(&plan.secrets).unwrap();
    assert_eq!(json(&again), json(&first));
    assert_eq!(again.material_hash, first.material_hash);
    assert_eq!(again.next_change, first.next_change);
    assert_eq!(again.certificates, first.certificates);
}

#[test]
fn a_restarted_operator_resumes_mid_rotation_from_secrets_alone() {
    let tls = TlsSpec {
        ca_validity: Some("2160h".to_owned()),
        ..TlsSpec::default()
    };
    let names = names();
    let steps = simulate(&tls, start(), start() + DAY * 70, BTreeMap::new());
    let introducing = steps
        .iter()
        .find(|step| step.phase() == "Introducing")
        .expect("a rotation within 70 days");
    let ca = secret(&introducing.plan, &names.ca_secret());
    assert_eq!(
        ca.metadata.annotations.as_ref().unwrap()[CA_ROTATION_PHASE_ANNOTATION],
        "Introducing"
    );
    assert!(ca.data.as_ref().unwrap().contains_key(NEXT_CA_CERT_KEY));

    // A new process, knowing nothing but the stored Secrets, one minute later.
    let resumed = plan_at(
        &names,
        &tls,
        introducing.at + jiff::SignedDuration::from_mins(1),
        &stored(&introducing.plan),
    );
    assert_eq!(resumed.secrets, introducing.plan.secrets);
    assert_eq!(
        resumed.next_change,
        Some(introducing.at + PROPAGATION_DELAY)
    );

    // At the named instant it continues with the next phase, signing with the new CA.
    let reissued = plan_at(
        &names,
        &tls,
        introducing.at + PROPAGATION_DELAY,
        &stored(&resumed),
    );
    assert_eq!(
        reissued.certificates.rotation_phase.as_deref(),
        Some("Reissuing")
    );
    let next_ca = value(ca, NEXT_CA_CERT_KEY);
    let new_ca = value(secret(&reissued, &names.ca_secret()), CA_CERT_KEY);
    assert_eq!(new_ca, next_ca, "the introduced CA becomes the signing CA");
    let leaf = Peer::agent(&reissued);
    verify::verify_client(&next_ca, &leaf.chain, reissued.next_change.unwrap()).unwrap();
}

#[test]
fn an_unreadable_ca_secret_is_replaced_not_fatal() {
    let tls = TlsSpec::default();
    let names = names();
    let first = plan_at(&names, &tls, start(), &BTreeMap::new());
    let mut existing = stored(&first);
    let ca = existing.get_mut(&names.ca_secret()).unwrap();
    ca.data.as_mut().unwrap().insert(
        CA_CERT_KEY.to_owned(),
        k8s_openapi::ByteString(b"garbage".to_vec()),
    );
    let replanned = plan_at(&names, &tls, start() + DAY, &existing);
    assert_ne!(
        replanned.certificates.ca, first.certificates.ca,
        "a new CA is minted"
    );
    let agent = Peer::agent(&replanned);
    let aggregator = Peer::aggregator(&replanned);
    verify::verify_client(&aggregator.bundle, &agent.chain, start() + DAY).unwrap();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

    /// Any lifetimes and renewal point: the invariant holds through at least two CA rotations,
    /// and the phases always come in order.
    #[test]
    fn any_settings_keep_both_sides_trusting_each_other(
        ca_hours in 24u32..2000,
        leaf_percent_of_ca in 2u32..=100,
        renew_at_percent in 10u8..=95,
    ) {
        let leaf_hours = (ca_hours * leaf_percent_of_ca / 100).max(1);
        let tls = TlsSpec {
            ca_validity: Some(format!("{ca_hours}h")),
            leaf_validity: Some(format!("{leaf_hours}h")),
            renew_at_percent: Some(renew_at_percent),
            ..TlsSpec::default()
        };
        let span = jiff::SignedDuration::from_hours(i64::from(ca_hours)) * 22 / 10;
        let steps = simulate(&tls, start(), start() + span, BTreeMap::new());
        assert_invariants(&steps);
        let changes = phase_changes(&steps);
        // The run may end mid-rotation: check the complete rotations, then the rest in order.
        let complete = (changes.len() - 1) / 4;
        proptest::prop_assert!(complete >= 2, "{changes:?}");
        assert_rotations(&changes[..1 + 4 * complete], complete);
        let rest: Vec<&str> = changes[1 + 4 * complete..].iter().map(|(p, _)| p.as_str()).collect();
        proptest::prop_assert_eq!(&rest[..], &["Introducing", "Reissuing", "Retiring"][..rest.len()]);
    }
}
