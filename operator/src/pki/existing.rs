//! Mode `Existing`: checks the user's Secrets (cert-manager format) without ever writing them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use crate::api::{CertificateInfo, CertificatesStatus, ExistingTlsSecrets};
use crate::layout::{CA_CERT_KEY, Names, TLS_CERT_KEY, TLS_KEY_KEY};
use crate::model::Problem;

use super::inspect::{self, CertFacts};
use super::settings::Settings;
use super::verify;

/// What the user's Secrets hold, as far as it could be read.
pub(super) struct Report {
    pub certificates: CertificatesStatus,
    pub problems: Vec<Problem>,
    /// The earliest expiry still ahead, so that the status turns when it passes.
    pub next_change: Option<jiff::Timestamp>,
}

struct UserSecret<'a> {
    field: &'static str,
    name: &'a str,
    bundle: Vec<u8>,
    chain: Vec<u8>,
    leaf: CertFacts,
    ca: Option<CertFacts>,
}

fn problem(reason: &'static str, field: &str, message: String) -> Problem {
    Problem {
        reason,
        field: format!("spec.tls.existing.{field}"),
        message,
    }
}

fn read<'a>(
    field: &'static str,
    name: &'a str,
    existing: &BTreeMap<String, Secret>,
    problems: &mut Vec<Problem>,
) -> Option<UserSecret<'a>> {
    let Some(secret) = existing.get(name) else {
        problems.push(problem(
            "TlsSecretMissing",
            field,
            format!("Secret {name:?} does not exist in the control namespace"),
        ));
        return None;
    };
    let data = secret.data.clone().unwrap_or_default();
    let mut value = |key: &str| match data.get(key) {
        Some(bytes) if !bytes.0.is_empty() => Some(bytes.0.clone()),
        _ => {
            problems.push(problem(
                "TlsSecretInvalid",
                field,
                format!("Secret {name:?} has no {key:?} (expected cert-manager format: ca.crt, tls.crt, tls.key)"),
            ));
            None
        }
    };
    let (bundle, chain, key) = (
        value(CA_CERT_KEY)?,
        value(TLS_CERT_KEY)?,
        value(TLS_KEY_KEY)?,
    );
    let leaf = match inspect::first_certificate(&chain) {
        Ok(leaf) => leaf,
        Err(error) => {
            problems.push(problem(
                "TlsSecretInvalid",
                field,
                format!("Secret {name:?} {TLS_CERT_KEY}: {error}"),
            ));
            return None;
        }
    };
    let key_matches = std::str::from_utf8(&key)
        .ok()
        .and_then(inspect::private_key_public_key)
        .is_some_and(|public_key| public_key == leaf.public_key);
    if !key_matches {
        problems.push(problem(
            "TlsSecretInvalid",
            field,
            format!("Secret {name:?}: {TLS_KEY_KEY} is not a readable private key (PKCS#8, SEC1 or PKCS#1 PEM) for the certificate in {TLS_CERT_KEY}"),
        ));
    }
    let ca = match inspect::certificates(&bundle) {
        Ok(cas) => cas.into_iter().next(),
        Err(error) => {
            problems.push(problem(
                "TlsSecretInvalid",
                field,
                format!("Secret {name:?} {CA_CERT_KEY}: {error}"),
            ));
            None
        }
    };
    Some(UserSecret {
        field,
        name,
        bundle,
        chain,
        leaf,
        ca,
    })
}

fn info(facts: &CertFacts) -> CertificateInfo {
    CertificateInfo {
        serial: facts.serial.clone(),
        not_after: facts.not_after.to_string(),
    }
}

pub(super) fn validate(
    names: &Names,
    settings: &Settings,
    spec: Option<&ExistingTlsSecrets>,
    existing: &BTreeMap<String, Secret>,
    now: jiff::Timestamp,
) -> Report {
    let mut problems = Vec::new();
    let Some(spec) = spec else {
        problems.push(Problem {
            reason: "TlsSecretMissing",
            field: "spec.tls.existing".to_owned(),
            message: "mode Existing needs serverSecretName and clientSecretName".to_owned(),
        });
        return Report {
            certificates: CertificatesStatus::default(),
            problems,
            next_change: None,
        };
    };
    let server = read(
        "serverSecretName",
        &spec.server_secret_name,
        existing,
        &mut problems,
    );
    let client = read(
        "clientSecretName",
        &spec.client_secret_name,
        existing,
        &mut problems,
    );

    for secret in [&server, &client].into_iter().flatten() {
        if now >= secret.leaf.not_after {
            problems.push(problem(
                "CertificateExpired",
                secret.field,
                format!(
                    "the certificate in Secret {:?} expired at {}",
                    secret.name, secret.leaf.not_after
                ),
            ));
        } else if now < secret.leaf.not_before {
            problems.push(problem(
                "CertificateNotYetValid",
                secret.field,
                format!(
                    "the certificate in Secret {:?} is valid only from {}",
                    secret.name, secret.leaf.not_before
                ),
            ));
        }
    }
    // Each side must accept the other's certificate with the bundle it mounts.
    if let (Some(server), Some(client)) = (&server, &client) {
        let host = names.aggregator_host();
        if let Err(error) = verify::verify_server(&client.bundle, &server.chain, &host, now) {
            problems.push(problem(
                "ServerCertificateUntrusted",
                server.field,
                format!("agents would reject the aggregator's certificate for {host:?} with the CA bundle of Secret {:?}: {error}", client.name),
            ));
        }
        if let Err(error) = verify::verify_client(&server.bundle, &client.chain, now) {
            problems.push(problem(
                "ClientCertificateUntrusted",
                client.field,
                format!("the aggregator would reject the agents' certificate with the CA bundle of Secret {:?}: {error}", server.name),
            ));
        }
    }
    if let Some(client) = &client {
        let common_name = client.leaf.common_name.as_deref().unwrap_or_default();
        if !super::client_name_allowed(&settings.allowed_client_names, common_name) {
            problems.push(problem(
                "ClientNameNotAllowed",
                client.field,
                format!(
                    "the agents' certificate has common name {common_name:?}, which does not fully match allowedClientNames {:?}",
                    settings.allowed_client_names
                ),
            ));
        }
    }

    let certificates = CertificatesStatus {
        ca: server
            .as_ref()
            .and_then(|secret| secret.ca.as_ref())
            .map(info),
        server: server.as_ref().map(|secret| info(&secret.leaf)),
        client: client.as_ref().map(|secret| info(&secret.leaf)),
        rotation_phase: None,
        next_rotation: None,
    };
    let next_change = [&server, &client]
        .into_iter()
        .flatten()
        .flat_map(|secret| [Some(&secret.leaf), secret.ca.as_ref()])
        .flatten()
        .flat_map(|facts| [facts.not_before, facts.not_after])
        .filter(|instant| *instant > now)
        .min();
    Report {
        certificates,
        problems,
        next_change,
    }
}
