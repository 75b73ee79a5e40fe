//! Plans the TLS material of one Logging from its spec, the current time and the Secrets
//! that exist: what to mint, renew or rotate, and when to look again. No I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use crate::api::{CertificatesStatus, TlsSpec};
use crate::layout::Names;
use crate::model::Problem;

/// What the planner needs to know.
#[derive(Clone, Debug)]
pub struct PkiRequest<'a> {
    pub names: &'a Names,
    pub tls: &'a TlsSpec,
    pub now: jiff::Timestamp,
    /// Secrets that exist in the control namespace, by name (Sluice's own, and user Secrets
    /// named by `tls.existing` or `tls.sharedKeySecretRef`).
    pub existing: &'a BTreeMap<String, Secret>,
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
    /// Problems with user-provided material (mode `Existing`, shared key reference).
    pub problems: Vec<Problem>,
    /// Hash over everything pods mount from the TLS and shared-key Secrets, for the
    /// pod-template annotation that rolls pods when it changes.
    pub material_hash: String,
}

/// Plans the TLS material. Pure; RSA key generation is slow, so async callers run this on a
/// blocking thread.
pub fn plan(request: &PkiRequest<'_>) -> PkiPlan {
    let _ = request;
    PkiPlan::default()
}
