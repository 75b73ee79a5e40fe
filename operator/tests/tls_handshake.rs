//! Real TLS handshakes (rustls, ring, in memory) between an aggregator and an agent holding
//! minted material: what must connect does, what must be refused is.

mod tls_support;

use std::collections::BTreeMap;

use sluice::api::{KeyAlgorithm, TlsSpec};
use sluice::pki;
use tls_support::{Attempt, Peer, handshake, names, plan_at, simulate, start, stored};

const DAY: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

fn minted(tls: &TlsSpec) -> pki::PkiPlan {
    plan_at(&names(), tls, start(), &BTreeMap::new())
}

fn soon() -> jiff::Timestamp {
    start() + jiff::SignedDuration::from_hours(1)
}

#[test]
fn every_key_algorithm_mints_and_handshakes_over_tls_1_2_and_1_3() {
    let algorithms = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
    ];
    for algorithm in algorithms {
        let tls = TlsSpec {
            key_algorithm: Some(algorithm),
            ..TlsSpec::default()
        };
        let plan = minted(&tls);
        for cert in [
            &plan.certificates.ca,
            &plan.certificates.server,
            &plan.certificates.client,
        ] {
            assert!(cert.is_some(), "{algorithm:?}: missing certificate");
        }
        let aggregator = Peer::aggregator(&plan);
        let facts = pki::inspect::first_certificate(&aggregator.chain).unwrap();
        assert_eq!(facts.key_algorithm, Some(algorithm));
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let attempt = Attempt {
                client_versions: vec![version],
                ..Attempt::at(soon())
            };
            handshake(&aggregator, &Peer::agent(&plan), &attempt)
                .unwrap_or_else(|error| panic!("{algorithm:?} {version:?}: {error}"));
        }
    }
}

#[test]
fn old_and_new_leaves_handshake_in_every_rotation_phase() {
    let tls = TlsSpec {
        ca_validity: Some("2160h".to_owned()),
        ..TlsSpec::default()
    };
    let steps = simulate(&tls, start(), start() + DAY * 70, BTreeMap::new());
    let mut phases_seen = Vec::new();
    for pair in steps.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        phases_seen.push(after.phase().to_owned());
        // While the change propagates, any pod may still hold the material from before.
        for aggregator in [
            Peer::aggregator(&before.plan),
            Peer::aggregator(&after.plan),
        ] {
            for agent in [Peer::agent(&before.plan), Peer::agent(&after.plan)] {
                handshake(&aggregator, &agent, &Attempt::at(after.at)).unwrap_or_else(|error| {
                    panic!(
                        "{} -> {} at {}: {error}",
                        before.phase(),
                        after.phase(),
                        after.at
                    )
                });
            }
        }
    }
    for phase in ["Introducing", "Reissuing", "Retiring", "Stable"] {
        assert!(
            phases_seen.iter().any(|seen| seen == phase),
            "{phase} not reached"
        );
    }
}

#[test]
fn a_client_certificate_from_a_foreign_ca_is_refused() {
    let tls = TlsSpec::default();
    let ours = minted(&tls);
    let theirs = minted(&tls);
    let error = handshake(
        &Peer::aggregator(&ours),
        &Peer {
            // The intruder trusts our CA, so only the aggregator's check can stop it.
            bundle: Peer::agent(&ours).bundle,
            ..Peer::agent(&theirs)
        },
        &Attempt::at(soon()),
    )
    .unwrap_err();
    assert!(error.starts_with("server rejected"), "{error}");
}

#[test]
fn an_expired_leaf_is_refused() {
    let plan = minted(&TlsSpec::default());
    let (aggregator, agent) = (Peer::aggregator(&plan), Peer::agent(&plan));
    handshake(&aggregator, &agent, &Attempt::at(start() + DAY * 89)).unwrap();
    let error = handshake(&aggregator, &agent, &Attempt::at(start() + DAY * 91)).unwrap_err();
    assert!(
        error.contains("rejected") && error.contains("xpired"),
        "{error}"
    );
}

#[test]
fn a_client_without_certificate_is_refused() {
    let plan = minted(&TlsSpec::default());
    let attempt = Attempt {
        present_client_cert: false,
        ..Attempt::at(soon())
    };
    let error = handshake(&Peer::aggregator(&plan), &Peer::agent(&plan), &attempt).unwrap_err();
    assert!(error.starts_with("server rejected"), "{error}");
}

#[test]
fn a_client_common_name_outside_the_pattern_is_refused() {
    let names = names();
    let plan = minted(&TlsSpec::default());
    // Same CA, but the agents' certificate now says "intruder".
    let renamed = plan_at(
        &names,
        &TlsSpec {
            client_common_name: Some("intruder".to_owned()),
            ..TlsSpec::default()
        },
        soon(),
        &stored(&plan),
    );
    assert_eq!(renamed.certificates.ca, plan.certificates.ca);
    let aggregator = Peer::aggregator(&plan);
    let agent = Peer::agent(&renamed);
    pki::verify::verify_client(&aggregator.bundle, &agent.chain, soon())
        .expect("the chain alone is valid");
    let error = handshake(&aggregator, &agent, &Attempt::at(soon())).unwrap_err();
    assert!(error.contains("not allowed"), "{error}");

    let permissive = Attempt {
        allowed_client_names: "fluent-bit|intruder".to_owned(),
        ..Attempt::at(soon())
    };
    handshake(&aggregator, &agent, &permissive).unwrap();
}

#[test]
fn a_server_name_not_in_the_certificate_is_refused() {
    let plan = minted(&TlsSpec::default());
    let (aggregator, agent) = (Peer::aggregator(&plan), Peer::agent(&plan));
    let names = names();
    for name in [
        format!(
            "{}.{}.svc.cluster.local",
            names.aggregator(),
            names.control_namespace
        ),
        format!(
            "{}-0.{}.{}.svc",
            names.aggregator(),
            names.aggregator_headless_service(),
            names.control_namespace
        ),
    ] {
        let attempt = Attempt {
            server_name: name.clone(),
            ..Attempt::at(soon())
        };
        handshake(&aggregator, &agent, &attempt).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let attempt = Attempt {
        server_name: "aggregator.elsewhere.svc".to_owned(),
        ..Attempt::at(soon())
    };
    let error = handshake(&aggregator, &agent, &attempt).unwrap_err();
    assert!(error.starts_with("client rejected"), "{error}");
}

#[test]
fn a_tls_version_below_the_minimum_is_refused() {
    let plan = minted(&TlsSpec::default());
    let (aggregator, agent) = (Peer::aggregator(&plan), Peer::agent(&plan));
    let tls12_only = vec![&rustls::version::TLS12];
    let tls13_minimum = vec![&rustls::version::TLS13];
    let attempt = Attempt {
        server_versions: tls13_minimum,
        client_versions: tls12_only.clone(),
        ..Attempt::at(soon())
    };
    let error = handshake(&aggregator, &agent, &attempt).unwrap_err();
    assert!(error.contains("rejected"), "{error}");
    let both_tls12 = Attempt {
        server_versions: tls12_only.clone(),
        client_versions: tls12_only,
        ..Attempt::at(soon())
    };
    handshake(&aggregator, &agent, &both_tls12).unwrap();
}
