//! `openssl verify` accepts the minted chains, as fluentd's and fluent-bit's OpenSSL will.

mod tls_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use sluice::api::TlsSpec;
use sluice::pki::PkiPlan;
use tls_support::{Peer, names, plan_at, simulate, start};

fn openssl_available() -> bool {
    let found = Command::new("openssl").arg("version").output().is_ok();
    if !found {
        eprintln!("SKIPPED: the `openssl` binary is not installed; CI installs it");
    }
    found
}

/// Runs `openssl verify` for `cert` against `bundle`, with the purpose (EKU) and, for the
/// server, the host name agents dial.
fn openssl_verify(
    dir: &Path,
    at: jiff::Timestamp,
    bundle: &[u8],
    cert: &[u8],
    purpose: &str,
    host: Option<&str>,
) -> Result<(), String> {
    let bundle_path = dir.join("bundle.crt");
    let cert_path = dir.join("leaf.crt");
    std::fs::write(&bundle_path, bundle).unwrap();
    std::fs::write(&cert_path, cert).unwrap();
    let mut command = Command::new("openssl");
    command
        .arg("verify")
        .arg("-CAfile")
        .arg(&bundle_path)
        .arg("-purpose")
        .arg(purpose)
        // The certificates are minted for a simulated clock.
        .arg("-attime")
        .arg(at.as_second().to_string());
    if let Some(host) = host {
        command.arg("-verify_hostname").arg(host);
    }
    let output = command.arg(&cert_path).output().unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn assert_chains_verify(dir: &Path, at: jiff::Timestamp, plan: &PkiPlan) {
    let host = names().aggregator_host();
    let (aggregator, agent) = (Peer::aggregator(plan), Peer::agent(plan));
    openssl_verify(
        dir,
        at,
        &agent.bundle,
        &aggregator.chain,
        "sslserver",
        Some(&host),
    )
    .unwrap();
    openssl_verify(dir, at, &aggregator.bundle, &agent.chain, "sslclient", None).unwrap();
}

#[test]
fn openssl_verifies_minted_server_and_client_certificates() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_at(&names(), &TlsSpec::default(), start(), &BTreeMap::new());
    assert_chains_verify(dir.path(), soon(), &plan);

    // And refuses what it must: a foreign CA, the wrong purpose, the wrong host.
    let foreign = plan_at(&names(), &TlsSpec::default(), start(), &BTreeMap::new());
    let (aggregator, agent) = (Peer::aggregator(&plan), Peer::agent(&plan));
    assert!(
        openssl_verify(
            dir.path(),
            soon(),
            &aggregator.bundle,
            &Peer::agent(&foreign).chain,
            "sslclient",
            None
        )
        .is_err()
    );
    assert!(
        openssl_verify(
            dir.path(),
            soon(),
            &aggregator.bundle,
            &agent.chain,
            "sslserver",
            None
        )
        .is_err()
    );
    assert!(
        openssl_verify(
            dir.path(),
            soon(),
            &agent.bundle,
            &aggregator.chain,
            "sslserver",
            Some("evil.example")
        )
        .is_err()
    );
}

#[test]
fn openssl_verifies_the_chains_in_every_rotation_phase() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsSpec {
        ca_validity: Some("2160h".to_owned()),
        ..TlsSpec::default()
    };
    let steps = simulate(&tls, start(), start() + DAY * 70, BTreeMap::new());
    let mut phases = std::collections::BTreeSet::new();
    for step in &steps {
        phases.insert(step.phase().to_owned());
        assert_chains_verify(
            dir.path(),
            step.at + jiff::SignedDuration::from_mins(1),
            &step.plan,
        );
    }
    assert_eq!(phases.len(), 4, "all four phases checked: {phases:?}");
}

fn soon() -> jiff::Timestamp {
    start() + jiff::SignedDuration::from_hours(1)
}

const DAY: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// The Secrets `sluice render` prints for the examples hold chains openssl accepts.
#[test]
fn openssl_verifies_the_chains_sluice_render_prints() {
    if !openssl_available() {
        return;
    }
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["render", "--now", &soon().to_string(), "-f", examples])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stream = String::from_utf8(output.stdout).unwrap();
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&stream).unwrap();
    let secrets: Vec<k8s_openapi::api::core::v1::Secret> = documents
        .into_iter()
        .filter(|document| document["kind"] == "Secret")
        .map(|document| serde_json::from_value(document).unwrap())
        .collect();
    let find = |suffix: &str| {
        let secret = secrets
            .iter()
            .find(|secret| {
                secret.type_.as_deref() == Some("kubernetes.io/tls")
                    && secret.metadata.name.as_deref().unwrap().ends_with(suffix)
            })
            .unwrap_or_else(|| panic!("no *{suffix} Secret rendered"));
        let logging = &secret.metadata.labels.as_ref().unwrap()[sluice::layout::LOGGING_LABEL];
        let namespace = secret.metadata.namespace.clone().unwrap();
        (
            Peer::from_secret(secret),
            sluice::layout::Names::new(logging, &namespace),
        )
    };
    let (aggregator, names) = find("-aggregator-tls");
    let (agent, _) = find("-agent-tls");
    let dir = tempfile::tempdir().unwrap();
    let host = names.aggregator_host();
    openssl_verify(
        dir.path(),
        soon(),
        &agent.bundle,
        &aggregator.chain,
        "sslserver",
        Some(&host),
    )
    .unwrap();
    openssl_verify(
        dir.path(),
        soon(),
        &aggregator.bundle,
        &agent.chain,
        "sslclient",
        None,
    )
    .unwrap();
}
