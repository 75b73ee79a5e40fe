//! Plans the TLS material of one Logging from its spec, the current time and the Secrets
//! that exist: what to mint, renew or rotate, and when to look again. No I/O.
//!
//! Submodules: [`settings`] (spec with defaults), [`mint`] (rcgen), [`inspect`] (read-back
//! with x509-parser), [`verify`] (rustls chain checks), `rotation` (mode `Managed`) and
//! `existing` (mode `Existing`).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use crate::api::{CertificatesStatus, SecretKeyRef, TlsMode, TlsSpec};
use crate::layout::{CA_CERT_KEY, Names, SHARED_KEY_KEY, TLS_CERT_KEY, TLS_KEY_KEY};
use crate::model::Problem;

mod existing;
pub mod inspect;
pub mod mint;
mod rotation;
pub mod settings;
pub mod verify;

pub use rotation::{MAX_ROLLOUT_WAIT, PROPAGATION_DELAY, Phase};
pub use settings::{Settings, allowed_client_names};

/// What the planner needs to know.
#[derive(Clone, Debug)]
pub struct PkiRequest<'a> {
    pub names: &'a Names,
    pub tls: &'a TlsSpec,
    pub now: jiff::Timestamp,
    /// Secrets that exist in the control namespace, by name (Sluice's own, and user Secrets
    /// named by `tls.existing` or `tls.sharedKeySecretRef`).
    pub existing: &'a BTreeMap<String, Secret>,
    /// What is known about the pods that mount the material; CA rotation steps wait for it.
    pub rollout: Rollout,
}

/// Whether the pods run the stored TLS material, which gates each CA rotation step: a new
/// trust bundle must be loaded everywhere before leaves from the new CA appear, and those
/// leaves must be everywhere before the old CA is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Nothing is known about the pods (`sluice render`): steps follow the propagation delay.
    Unobserved,
    /// The TLS hash (`layout::TLS_HASH_ANNOTATION`) that every agent and aggregator pod runs
    /// with, once both workloads have fully rolled out to the same one; `None` while a rollout
    /// is in progress or the workloads disagree.
    Observed { settled_tls_hash: Option<String> },
}

/// The desired TLS state of one Logging.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PkiPlan {
    /// Complete Secrets Sluice owns and applies (CA, aggregator TLS, agent TLS, shared key).
    /// Byte-identical to `existing` when nothing is due.
    pub secrets: Vec<Secret>,
    /// Validity of the material in use, for the Logging's status.
    pub certificates: CertificatesStatus,
    /// The next instant at which the plan changes (renewal, CA phase change), if any.
    pub next_change: Option<jiff::Timestamp>,
    /// Problems with the TLS settings or user-provided material (mode `Existing`, shared key
    /// reference).
    pub problems: Vec<Problem>,
    /// Hash over everything pods mount from the TLS and shared-key Secrets, for the
    /// pod-template annotation that rolls pods when it changes.
    pub material_hash: String,
}

/// Why no plan could be made. Only minting can fail, and only on a broken crypto backend or
/// an instant outside what X.509 can express.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot mint certificate: {0}")]
    Mint(#[from] rcgen::Error),
    #[error("cannot generate key: {0}")]
    KeyGeneration(String),
    #[error("instant {0} cannot be expressed in a certificate")]
    TimeOutOfRange(jiff::Timestamp),
    #[error("cannot read back a minted certificate: {0}")]
    Inspect(#[from] inspect::InspectError),
}

/// Type of the leaf Secrets (cert-manager format, what `kubectl create secret tls` makes).
pub(crate) const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
pub(crate) const OPAQUE: &str = "Opaque";
/// Label component of every Secret the planner returns.
const COMPONENT: &str = "tls";
/// Random bytes in a generated shared key (hex-encoded, so twice as many characters).
const SHARED_KEY_BYTES: usize = 32;

pub(crate) fn secret(
    names: &Names,
    name: &str,
    type_: &str,
    data: BTreeMap<String, ByteString>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(names.control_namespace.clone()),
            labels: Some(names.labels(COMPONENT)),
            ..ObjectMeta::default()
        },
        type_: Some(type_.to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Whether a client certificate's common name is accepted: `cn` must match `pattern` as a
/// whole (`\A(?:pattern)\z`), the rule the aggregator's fluentd `cert_verifier` applies after
/// the chain check, compiled as Ruby compiles it. An invalid pattern accepts nobody.
pub fn client_name_allowed(pattern: &str, cn: &str) -> bool {
    use crate::model::validate::regex::{client_names_regexp, matches};
    client_names_regexp(pattern).is_ok_and(|regex| matches(&regex, cn))
}

/// Where both pods read the shared key from.
pub fn shared_key_source(names: &Names, tls: &TlsSpec) -> SecretKeyRef {
    tls.shared_key_secret_ref
        .clone()
        .unwrap_or_else(|| SecretKeyRef {
            name: names.shared_key_secret(),
            key: SHARED_KEY_KEY.to_owned(),
        })
}

/// The Secrets the aggregator and the agents mount at [`crate::layout::AGGREGATOR_TLS_DIR`]
/// and [`crate::layout::AGENT_TLS_DIR`]: Sluice's own, or the user's in mode `Existing`.
/// Mode `Disabled` mounts nothing; callers check the mode first.
pub fn mounted_tls_secrets(names: &Names, tls: &TlsSpec) -> (String, String) {
    match (tls.mode.unwrap_or_default(), &tls.existing) {
        (TlsMode::Existing, Some(existing)) => (
            existing.server_secret_name.clone(),
            existing.client_secret_name.clone(),
        ),
        _ => (names.aggregator_tls_secret(), names.agent_tls_secret()),
    }
}

fn usable_shared_key(value: &[u8]) -> bool {
    value.len() >= SHARED_KEY_BYTES && value.iter().all(|byte| byte.is_ascii_graphic())
}

/// The shared key's value, and the Secret to write when Sluice generates it.
fn shared_key(request: &PkiRequest<'_>, problems: &mut Vec<Problem>) -> (Vec<u8>, Option<Secret>) {
    let source = shared_key_source(request.names, request.tls);
    let stored = request
        .existing
        .get(&source.name)
        .and_then(|secret| secret.data.as_ref()?.get(&source.key))
        .map(|value| value.0.clone());
    if request.tls.shared_key_secret_ref.is_some() {
        let field = "spec.tls.sharedKeySecretRef".to_owned();
        match &stored {
            None => problems.push(Problem {
                reason: "SharedKeyMissing",
                field,
                message: format!(
                    "Secret {:?} with key {:?} does not exist in the control namespace",
                    source.name, source.key
                ),
            }),
            Some(value) if value.is_empty() => problems.push(Problem {
                reason: "SharedKeyInvalid",
                field,
                message: format!("key {:?} of Secret {:?} is empty", source.key, source.name),
            }),
            Some(_) => {}
        }
        return (stored.unwrap_or_default(), None);
    }
    let value = stored
        .filter(|value| usable_shared_key(value))
        .unwrap_or_else(|| {
            let random: [u8; SHARED_KEY_BYTES] = rand::random();
            hex::encode(random).into_bytes()
        });
    let secret = secret(
        request.names,
        &source.name,
        OPAQUE,
        BTreeMap::from([(source.key, ByteString(value.clone()))]),
    );
    (value, Some(secret))
}

/// Hex SHA-256 over what pods mount: both TLS Secrets' `ca.crt`, `tls.crt`, `tls.key`, and
/// the shared key. Each value is length-prefixed so that no two inputs collide by
/// concatenation.
fn material_hash(mounted: [Option<&Secret>; 2], shared_key: &[u8]) -> String {
    let mut hasher = Sha256::new();
    let mut field = |value: &[u8]| {
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value);
    };
    for secret in mounted {
        let data = secret.and_then(|secret| secret.data.as_ref());
        for key in [CA_CERT_KEY, TLS_CERT_KEY, TLS_KEY_KEY] {
            field(
                data.and_then(|data| data.get(key))
                    .map_or(&[], |value| &value.0),
            );
        }
    }
    field(shared_key);
    hex::encode(hasher.finalize())
}

/// Plans the TLS material. Pure; RSA key generation is slow, so async callers run this on a
/// blocking thread.
pub fn plan(request: &PkiRequest<'_>) -> Result<PkiPlan, PkiError> {
    let (settings, mut problems) = Settings::from_spec(request.tls);
    let (shared_key, shared_key_secret) = shared_key(request, &mut problems);
    let (aggregator_secret, agent_secret) = mounted_tls_secrets(request.names, request.tls);

    let mut plan = PkiPlan::default();
    match settings.mode {
        TlsMode::Managed => {
            let stored_hash = material_hash(
                [
                    request.existing.get(&aggregator_secret),
                    request.existing.get(&agent_secret),
                ],
                &shared_key,
            );
            let pods_settled = match &request.rollout {
                Rollout::Unobserved => true,
                Rollout::Observed { settled_tls_hash } => {
                    settled_tls_hash.as_deref() == Some(stored_hash.as_str())
                }
            };
            let managed = rotation::plan(
                request.names,
                &settings,
                request.existing,
                request.now,
                pods_settled,
            )?;
            plan.secrets = managed.secrets;
            plan.certificates = managed.certificates;
            plan.next_change = Some(managed.next_change);
        }
        TlsMode::Existing => {
            let report = existing::validate(
                request.names,
                &settings,
                request.tls.existing.as_ref(),
                request.existing,
                request.now,
            );
            plan.certificates = report.certificates;
            plan.next_change = report.next_change;
            problems.extend(report.problems);
        }
        TlsMode::Disabled => {}
    }
    let find = |name: &str| {
        let named = |secret: &&Secret| secret.metadata.name.as_deref() == Some(name);
        match settings.mode {
            TlsMode::Managed => plan.secrets.iter().find(named),
            TlsMode::Existing => request.existing.get(name),
            TlsMode::Disabled => None,
        }
    };
    plan.material_hash =
        material_hash([find(&aggregator_secret), find(&agent_secret)], &shared_key);
    plan.secrets.extend(shared_key_secret);
    plan.problems = problems;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn client_names_must_match_the_whole_pattern() {
        let default = allowed_client_names(&TlsSpec::default());
        assert!(client_name_allowed(&default, "fluent-bit"));
        assert!(!client_name_allowed(&default, "fluent-bit-evil"));
        assert!(!client_name_allowed(&default, "xfluent-bit"));
        // The default is the literal name: `.` in a custom name matches only a dot.
        let dotted = allowed_client_names(&TlsSpec {
            client_common_name: Some("agent.example".to_owned()),
            ..TlsSpec::default()
        });
        assert!(client_name_allowed(&dotted, "agent.example"));
        assert!(!client_name_allowed(&dotted, "agentXexample"));

        let pattern = "fluent-bit(-[a-z0-9-]+)?";
        assert!(client_name_allowed(pattern, "fluent-bit-node-1"));
        assert!(!client_name_allowed(pattern, "fluent-bit-NODE"));
        // Anchors wrap the whole alternation, not just its ends.
        assert!(client_name_allowed("a|b", "a"));
        assert!(!client_name_allowed("a|b", "ab"));
        assert!(!client_name_allowed("a|b", "xb"));
        assert!(
            !client_name_allowed("(", "("),
            "an invalid pattern accepts nobody"
        );
        // A newline does not end the match early (Ruby's `$` would; `\z` does not).
        assert!(!client_name_allowed(pattern, "fluent-bit\nevil"));
    }

    proptest! {
        #[test]
        fn the_default_pattern_accepts_exactly_the_own_name(
            own in "[A-Za-z0-9][A-Za-z0-9.-]{0,20}",
            other in "[A-Za-z0-9][A-Za-z0-9.-]{0,20}",
        ) {
            let pattern = allowed_client_names(&TlsSpec {
                client_common_name: Some(own.clone()),
                ..TlsSpec::default()
            });
            prop_assert!(client_name_allowed(&pattern, &own));
            prop_assert_eq!(client_name_allowed(&pattern, &other), other == own);
        }
    }

    #[test]
    fn unusable_settings_fall_back_to_defaults_with_problems() {
        let (settings, problems) = Settings::from_spec(&TlsSpec {
            ca_validity: Some("soon".to_owned()),
            leaf_validity: Some("10m".to_owned()),
            renew_at_percent: Some(100),
            allowed_client_names: Some("other".to_owned()),
            ..TlsSpec::default()
        });
        assert_eq!(
            settings.ca_validity,
            jiff::SignedDuration::from_hours(43800)
        );
        assert_eq!(
            settings.leaf_validity,
            jiff::SignedDuration::from_hours(2160)
        );
        assert_eq!(settings.renew_at_percent, 66);
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.tls.caValidity",
                "spec.tls.leafValidity",
                "spec.tls.renewAtPercent",
                "spec.tls.allowedClientNames"
            ]
        );
    }

    #[test]
    fn planned_secrets_are_complete() {
        let names = Names::new("main", "logging");
        let tls = TlsSpec::default();
        let plan = plan(&PkiRequest {
            names: &names,
            tls: &tls,
            now: "2026-01-01T00:00:00Z".parse().unwrap(),
            existing: &BTreeMap::new(),
            rollout: Rollout::Unobserved,
        })
        .unwrap();
        let described: Vec<_> = plan
            .secrets
            .iter()
            .map(|secret| {
                let keys: Vec<_> = secret.data.as_ref().unwrap().keys().cloned().collect();
                (
                    secret.metadata.name.clone().unwrap(),
                    secret.metadata.namespace.clone().unwrap(),
                    secret.type_.clone().unwrap(),
                    keys,
                )
            })
            .collect();
        let entry = |name: &str, type_: &str, keys: &[&str]| {
            (
                name.to_owned(),
                "logging".to_owned(),
                type_.to_owned(),
                keys.iter().map(|key| (*key).to_owned()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            described,
            vec![
                entry("main-ca", "Opaque", &["ca.crt", "ca.key"]),
                entry(
                    "main-aggregator-tls",
                    TLS_SECRET_TYPE,
                    &["ca.crt", "tls.crt", "tls.key"]
                ),
                entry(
                    "main-agent-tls",
                    TLS_SECRET_TYPE,
                    &["ca.crt", "tls.crt", "tls.key"]
                ),
                entry("main-shared-key", "Opaque", &[SHARED_KEY_KEY]),
            ]
        );
        for secret in &plan.secrets {
            assert_eq!(secret.metadata.labels.as_ref(), Some(&names.labels("tls")));
            for value in secret.data.as_ref().unwrap().values() {
                assert!(!value.0.contains(&b'\r'), "fluentd rejects CRLF PEM");
            }
        }
        let json = serde_json::to_value(&plan.secrets[0]).unwrap();
        assert_eq!(json["apiVersion"], "v1");
        assert_eq!(json["kind"], "Secret");
        assert_eq!(plan.material_hash.len(), 64);
    }
}
