//! Which Secrets an output may reference. The Logging's admin owns every shared resource:
//! Secrets Sluice creates (CA, TLS, shared key, configs, copied credentials) and those a
//! Logging names for its own TLS are never an output's to send anywhere.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;

use crate::api::Logging;
use crate::layout::{LOGGING_LABEL, MANAGED_BY, Names};

/// Secrets a Logging names in its TLS settings, in its control namespace.
pub fn logging_secret_names(logging: &Logging) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    if let Some(tls) = &logging.spec.tls {
        if let Some(reference) = &tls.shared_key_secret_ref {
            names.insert(reference.name.clone());
        }
        if let Some(existing) = &tls.existing {
            names.insert(existing.server_secret_name.clone());
            names.insert(existing.client_secret_name.clone());
        }
    }
    names
}

/// Why Secret `namespace/name` belongs to Sluice, if it does: it carries Sluice's labels, or
/// it has a name Sluice derives (or a Logging names) for a Logging whose control namespace
/// this is. Names count even when the Secret does not exist yet, so a reference made before
/// Sluice creates it cannot pick it up later.
pub fn managed_by_sluice(
    loggings: &[&Logging],
    namespace: &str,
    name: &str,
    secret: Option<&Secret>,
) -> Option<String> {
    if let Some(labels) = secret.and_then(|s| s.metadata.labels.as_ref()) {
        if labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str)
            == Some(MANAGED_BY)
        {
            return Some(format!(
                "labelled app.kubernetes.io/managed-by={MANAGED_BY}"
            ));
        }
        if let Some(logging) = labels.get(LOGGING_LABEL) {
            return Some(format!("labelled {LOGGING_LABEL}={logging}"));
        }
    }
    loggings
        .iter()
        .filter(|l| l.spec.control_namespace == namespace)
        .find_map(|logging| {
            let logging_name = logging.metadata.name.as_deref().unwrap_or_default();
            let names = Names::new(logging_name, namespace);
            let mut derived = vec![
                names.ca_secret(),
                names.shared_key_secret(),
                names.aggregator_tls_secret(),
                names.agent_tls_secret(),
                names.agent_routes_secret(),
            ];
            for component in [
                crate::layout::AGENT_COMPONENT,
                crate::layout::AGGREGATOR_COMPONENT,
            ] {
                for candidate in names.candidate_bundle_secrets(component) {
                    derived.extend(names.accepted_secret(&candidate));
                    derived.push(candidate);
                }
            }
            let used =
                derived.iter().any(|d| d == name) || logging_secret_names(logging).contains(name);
            used.then(|| format!("used by Logging {logging_name:?}"))
        })
}

/// The value of `key` in a Secret, from `data` or (as written, before the API server folds
/// it into `data`) `stringData`.
pub fn value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(value) = secret.data.as_ref().and_then(|data| data.get(key)) {
        return Some(value.0.clone());
    }
    secret
        .string_data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|value| value.as_bytes().to_vec())
}
