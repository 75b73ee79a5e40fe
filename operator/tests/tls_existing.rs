//! Modes `Existing` and `Disabled`, and the shared key.

mod tls_support;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use sluice::api::{ExistingTlsSecrets, SecretKeyRef, TlsMode, TlsSpec};
use sluice::layout::{SHARED_KEY_KEY, TLS_CERT_KEY};
use sluice::pki::{self, PkiPlan};
use tls_support::{names, plan_at, secret, start, stored, value};

const DAY: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

fn existing_mode() -> TlsSpec {
    TlsSpec {
        mode: Some(TlsMode::Existing),
        existing: Some(ExistingTlsSecrets {
            server_secret_name: "fluentd-tls".to_owned(),
            client_secret_name: "fluent-bit-tls".to_owned(),
        }),
        ..TlsSpec::default()
    }
}

/// User Secrets in cert-manager format, made from a managed plan's leaves.
fn user_secrets(plan: &PkiPlan) -> BTreeMap<String, Secret> {
    let names = names();
    let mut user = BTreeMap::new();
    for (from, to) in [
        (names.aggregator_tls_secret(), "fluentd-tls"),
        (names.agent_tls_secret(), "fluent-bit-tls"),
    ] {
        let mut copy = secret(plan, &from).clone();
        copy.metadata.name = Some(to.to_owned());
        user.insert(to.to_owned(), copy);
    }
    user
}

fn reasons(plan: &PkiPlan) -> Vec<&'static str> {
    plan.problems.iter().map(|problem| problem.reason).collect()
}

#[test]
fn valid_user_secrets_are_reported_and_never_written() {
    let managed = plan_at(&names(), &TlsSpec::default(), start(), &BTreeMap::new());
    let user = user_secrets(&managed);
    let plan = plan_at(&names(), &existing_mode(), start() + DAY, &user);
    assert_eq!(plan.problems, vec![]);
    let written: Vec<_> = plan
        .secrets
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        written,
        vec![names().shared_key_secret()],
        "only the shared key is Sluice's"
    );
    assert_eq!(plan.certificates.server, managed.certificates.server);
    assert_eq!(plan.certificates.client, managed.certificates.client);
    assert_eq!(plan.certificates.ca, managed.certificates.ca);
    // Status turns when the first certificate expires.
    assert_eq!(
        plan.next_change.unwrap().to_string(),
        managed.certificates.server.unwrap().not_after
    );
    assert_eq!(
        pki::mounted_tls_secrets(&names(), &existing_mode()),
        ("fluentd-tls".to_owned(), "fluent-bit-tls".to_owned())
    );

    // The hash covers the user's material: a renewal by cert-manager rolls the pods.
    let renewed = plan_at(&names(), &TlsSpec::default(), start(), &BTreeMap::new());
    let mut user2 = user.clone();
    user2.insert(
        "fluent-bit-tls".to_owned(),
        user_secrets(&renewed)["fluent-bit-tls"].clone(),
    );
    let mut existing2 = user2;
    existing2.extend(stored(&plan));
    let mut existing1 = user;
    existing1.extend(stored(&plan));
    let again = plan_at(&names(), &existing_mode(), start() + DAY, &existing1);
    let changed = plan_at(&names(), &existing_mode(), start() + DAY, &existing2);
    assert_eq!(again.material_hash, plan.material_hash);
    assert_ne!(changed.material_hash, plan.material_hash);
}

#[test]
fn missing_expired_and_mismatched_user_secrets_are_problems() {
    let managed = plan_at(&names(), &TlsSpec::default(), start(), &BTreeMap::new());
    let user = user_secrets(&managed);

    let missing = plan_at(&names(), &existing_mode(), start(), &BTreeMap::new());
    assert_eq!(
        reasons(&missing),
        vec!["TlsSecretMissing", "TlsSecretMissing"]
    );

    let expired = plan_at(&names(), &existing_mode(), start() + DAY * 100, &user);
    assert!(
        reasons(&expired).contains(&"CertificateExpired"),
        "{:?}",
        expired.problems
    );

    // A client certificate from another CA.
    let foreign = plan_at(&names(), &TlsSpec::default(), start(), &BTreeMap::new());
    let mut mixed = user.clone();
    mixed.insert(
        "fluent-bit-tls".to_owned(),
        user_secrets(&foreign)["fluent-bit-tls"].clone(),
    );
    let untrusted = plan_at(&names(), &existing_mode(), start() + DAY, &mixed);
    assert_eq!(
        reasons(&untrusted),
        vec!["ServerCertificateUntrusted", "ClientCertificateUntrusted"]
    );

    // A certificate with another key, and garbage.
    let mut broken = user.clone();
    let client = broken.get_mut("fluent-bit-tls").unwrap();
    let other_key = value(secret(&foreign, &names().agent_tls_secret()), "tls.key");
    client
        .data
        .as_mut()
        .unwrap()
        .insert("tls.key".to_owned(), k8s_openapi::ByteString(other_key));
    let server = broken.get_mut("fluentd-tls").unwrap();
    server.data.as_mut().unwrap().insert(
        TLS_CERT_KEY.to_owned(),
        k8s_openapi::ByteString(b"junk".to_vec()),
    );
    let invalid = plan_at(&names(), &existing_mode(), start() + DAY, &broken);
    assert_eq!(
        reasons(&invalid),
        vec!["TlsSecretInvalid", "TlsSecretInvalid"]
    );

    // A client name outside the allowed pattern.
    let strict = TlsSpec {
        allowed_client_names: Some("agent-[0-9]+".to_owned()),
        client_common_name: Some("agent-1".to_owned()),
        ..existing_mode()
    };
    let refused = plan_at(&names(), &strict, start() + DAY, &user);
    assert_eq!(reasons(&refused), vec!["ClientNameNotAllowed"]);
}

#[test]
fn disabled_mode_keeps_only_the_shared_key() {
    let tls = TlsSpec {
        mode: Some(TlsMode::Disabled),
        ..TlsSpec::default()
    };
    let plan = plan_at(&names(), &tls, start(), &BTreeMap::new());
    let written: Vec<_> = plan
        .secrets
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(written, vec![names().shared_key_secret()]);
    assert_eq!(plan.next_change, None);
    assert_eq!(plan.problems, vec![]);
}

#[test]
fn the_generated_shared_key_is_long_printable_and_stable() {
    let tls = TlsSpec::default();
    let plan = plan_at(&names(), &tls, start(), &BTreeMap::new());
    let shared = secret(&plan, &names().shared_key_secret());
    let key = value(shared, SHARED_KEY_KEY);
    assert!(
        key.len() >= 64 && key.iter().all(u8::is_ascii_hexdigit),
        "{key:?}"
    );
    let again = plan_at(&names(), &tls, start() + DAY, &stored(&plan));
    assert_eq!(
        value(secret(&again, &names().shared_key_secret()), SHARED_KEY_KEY),
        key
    );
    let other = plan_at(&names(), &tls, start(), &BTreeMap::new());
    assert_ne!(
        value(secret(&other, &names().shared_key_secret()), SHARED_KEY_KEY),
        key
    );
    assert_ne!(other.material_hash, plan.material_hash);
    assert_eq!(
        pki::shared_key_source(&names(), &tls),
        SecretKeyRef {
            name: names().shared_key_secret(),
            key: SHARED_KEY_KEY.to_owned()
        }
    );
}

#[test]
fn a_referenced_shared_key_is_checked_not_generated() {
    let reference = SecretKeyRef {
        name: "my-shared-key".to_owned(),
        key: "key".to_owned(),
    };
    let tls = TlsSpec {
        shared_key_secret_ref: Some(reference.clone()),
        ..TlsSpec::default()
    };
    assert_eq!(pki::shared_key_source(&names(), &tls), reference);
    let missing = plan_at(&names(), &tls, start(), &BTreeMap::new());
    assert_eq!(reasons(&missing), vec!["SharedKeyMissing"]);
    assert!(
        missing
            .secrets
            .iter()
            .all(|s| s.metadata.name.as_deref() != Some("my-shared-key"))
    );
    assert!(
        missing
            .secrets
            .iter()
            .all(|s| s.metadata.name != Some(names().shared_key_secret())),
        "no generated key when one is referenced"
    );

    let mut existing = stored(&missing);
    existing.insert(
        "my-shared-key".to_owned(),
        Secret {
            data: Some(BTreeMap::from([(
                "key".to_owned(),
                k8s_openapi::ByteString(b"correct horse battery staple".to_vec()),
            )])),
            ..Secret::default()
        },
    );
    let present = plan_at(&names(), &tls, start(), &existing);
    assert_eq!(present.problems, vec![]);
    assert_ne!(present.material_hash, missing.material_hash);
}
