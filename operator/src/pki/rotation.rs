//! Mode `Managed`: the CA rotation state machine and leaf renewal.
//!
//! The CA Secret records the phase and since when it holds; every other fact (serials,
//! validity, which CA signed which leaf) is read back from the certificates.
//!
//! CA rotation never swaps trust in one step:
//! 1. `Introducing`: a new CA joins the bundle of both sides; leaves still come from the old.
//! 2. `Reissuing` (one propagation delay later): leaves are re-issued from the new CA; the
//!    bundle still holds both, so old and new leaves verify on either side.
//! 3. `Retiring` (one more delay later): the old CA leaves the bundle.
//! 4. `Stable` (one more delay later).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use crate::api::{CertificateInfo, CertificatesStatus};
use crate::layout::{
    CA_CERT_KEY, CA_KEY_KEY, CA_ROTATION_PHASE_ANNOTATION, CA_ROTATION_SINCE_ANNOTATION,
    NEXT_CA_CERT_KEY, NEXT_CA_KEY_KEY, Names, PREVIOUS_CA_CERT_KEY, TLS_CERT_KEY, TLS_KEY_KEY,
};

use super::inspect::{self, CertFacts};
use super::mint::{self, BACKDATE, LeafRole, Minted};
use super::settings::Settings;
use super::{OPAQUE, PkiError, TLS_SECRET_TYPE, secret};

/// How long Sluice waits after publishing a change of trust before taking the next step:
/// mounted Secrets refresh within 60–90 s, and pods whose template hash changed roll.
pub const PROPAGATION_DELAY: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);
/// Longest a rotation step waits for pods to roll out before it proceeds anyway, so that a
/// node whose agent never becomes ready cannot stall a CA rotation until the CA expires.
pub const MAX_ROLLOUT_WAIT: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);
/// How often a step that waits for a rollout is looked at again.
const ROLLOUT_RECHECK: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

/// Phase of a CA rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Stable,
    Introducing,
    Reissuing,
    Retiring,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Stable => "Stable",
            Phase::Introducing => "Introducing",
            Phase::Reissuing => "Reissuing",
            Phase::Retiring => "Retiring",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Phase::Stable,
            Phase::Introducing,
            Phase::Reissuing,
            Phase::Retiring,
        ]
        .into_iter()
        .find(|phase| phase.as_str() == text)
    }
}

#[derive(Clone, Debug)]
struct Ca {
    minted: Minted,
    facts: CertFacts,
}

#[derive(Clone, Debug)]
struct CaState {
    /// Signs the leaves.
    active: Ca,
    /// Introduced, not yet signing (`Introducing` only).
    next: Option<Ca>,
    /// Still trusted, no longer signing (`Reissuing` only).
    previous: Option<(String, CertFacts)>,
    phase: Phase,
    since: jiff::Timestamp,
}

impl CaState {
    /// PEM bundle both sides trust.
    fn bundle(&self) -> String {
        let mut bundle = String::new();
        if let Some((pem, _)) = &self.previous {
            bundle.push_str(pem);
        }
        bundle.push_str(&self.active.minted.cert_pem);
        if let Some(next) = &self.next {
            bundle.push_str(&next.minted.cert_pem);
        }
        bundle
    }
}

fn text<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    let bytes = secret.data.as_ref()?.get(key)?;
    std::str::from_utf8(&bytes.0).ok()
}

/// A CA certificate and key that belong together and are usable at `now`.
fn read_ca(secret: &Secret, cert_key: &str, key_key: &str, now: jiff::Timestamp) -> Option<Ca> {
    let cert_pem = text(secret, cert_key)?;
    let key_pem = text(secret, key_key)?;
    let facts = inspect::first_certificate(cert_pem.as_bytes()).ok()?;
    let usable = facts.is_ca
        && facts.valid_at(now)
        && inspect::private_key_public_key(key_pem).as_deref() == Some(facts.public_key.as_slice());
    usable.then(|| Ca {
        minted: Minted {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        },
        facts,
    })
}

/// The CA state as stored; `None` when there is no usable CA and a new one must be minted.
/// Inconsistent states fall back to the safest phase that the stored material supports.
fn read_ca_state(secret: Option<&Secret>, now: jiff::Timestamp) -> Option<CaState> {
    let secret = secret?;
    let active = read_ca(secret, CA_CERT_KEY, CA_KEY_KEY, now)?;
    let annotations = secret.metadata.annotations.as_ref();
    let annotation = |key: &str| annotations.and_then(|map| map.get(key));
    let mut phase = annotation(CA_ROTATION_PHASE_ANNOTATION)
        .and_then(|text| Phase::parse(text))
        .unwrap_or(Phase::Stable);
    let since = annotation(CA_ROTATION_SINCE_ANNOTATION)
        .and_then(|text| text.parse::<jiff::Timestamp>().ok())
        .filter(|since| *since <= now)
        .unwrap_or(now);
    let mut next = None;
    let mut previous = None;
    match phase {
        Phase::Introducing => {
            next = read_ca(secret, NEXT_CA_CERT_KEY, NEXT_CA_KEY_KEY, now);
            if next.is_none() {
                phase = Phase::Stable;
            }
        }
        Phase::Reissuing => {
            previous = text(secret, PREVIOUS_CA_CERT_KEY).and_then(|pem| {
                let facts = inspect::first_certificate(pem.as_bytes()).ok()?;
                facts.valid_at(now).then(|| (pem.to_owned(), facts))
            });
            if previous.is_none() {
                phase = Phase::Retiring;
            }
        }
        Phase::Stable | Phase::Retiring => {}
    }
    Some(CaState {
        active,
        next,
        previous,
        phase,
        since,
    })
}

fn mint_ca(settings: &Settings, now: jiff::Timestamp) -> Result<Ca, PkiError> {
    let common_name = format!("Sluice CA {}", now.strftime("%Y%m%dT%H%M%SZ"));
    let minted = mint::mint_ca(
        settings.algorithm,
        &common_name,
        now - BACKDATE,
        now + settings.ca_validity,
    )?;
    let facts = inspect::first_certificate(minted.cert_pem.as_bytes())?;
    Ok(Ca { minted, facts })
}

/// Takes at most one step of the rotation: every step changes what pods trust or present,
/// and the next one waits until that change has propagated.
fn advance(
    state: Option<CaState>,
    settings: &Settings,
    now: jiff::Timestamp,
    pods_settled: bool,
) -> Result<CaState, PkiError> {
    let Some(state) = state else {
        return Ok(CaState {
            active: mint_ca(settings, now)?,
            next: None,
            previous: None,
            phase: Phase::Stable,
            since: now,
        });
    };
    let propagated = now >= state.since + PROPAGATION_DELAY
        && (pods_settled || now >= state.since + MAX_ROLLOUT_WAIT);
    Ok(match state.phase {
        Phase::Stable => {
            let due = now >= state.active.facts.renew_at(settings.renew_at_percent)
                || state.active.facts.key_algorithm != Some(settings.algorithm);
            if due {
                CaState {
                    next: Some(mint_ca(settings, now)?),
                    phase: Phase::Introducing,
                    since: now,
                    ..state
                }
            } else {
                state
            }
        }
        Phase::Introducing if propagated => match state.next {
            Some(next) => CaState {
                previous: Some((state.active.minted.cert_pem, state.active.facts)),
                active: next,
                next: None,
                phase: Phase::Reissuing,
                since: now,
            },
            None => CaState {
                phase: Phase::Stable,
                since: now,
                ..state
            },
        },
        Phase::Reissuing if propagated => CaState {
            previous: None,
            phase: Phase::Retiring,
            since: now,
            ..state
        },
        Phase::Retiring if propagated => CaState {
            phase: Phase::Stable,
            since: now,
            ..state
        },
        Phase::Introducing | Phase::Reissuing | Phase::Retiring => state,
    })
}

struct Leaf {
    minted: Minted,
    facts: CertFacts,
}

fn identity_matches(facts: &CertFacts, role: &LeafRole<'_>) -> bool {
    match role {
        LeafRole::Server { dns_names } => {
            facts.dns_names == *dns_names && facts.server_auth == Some(true)
        }
        LeafRole::Client { common_name } => {
            facts.common_name.as_deref() == Some(*common_name) && facts.client_auth == Some(true)
        }
    }
}

/// The stored leaf if it is still good at `now`, else a new one (with a new key).
fn plan_leaf(
    existing: Option<&Secret>,
    role: &LeafRole<'_>,
    ca: &Ca,
    settings: &Settings,
    now: jiff::Timestamp,
) -> Result<Leaf, PkiError> {
    let stored = existing.and_then(|secret| {
        let cert_pem = text(secret, TLS_CERT_KEY)?;
        let key_pem = text(secret, TLS_KEY_KEY)?;
        let facts = inspect::first_certificate(cert_pem.as_bytes()).ok()?;
        let good = facts.issued_by(&ca.facts)
            && facts.valid_at(now)
            && now < facts.renew_at(settings.renew_at_percent)
            && facts.key_algorithm == Some(settings.algorithm)
            && identity_matches(&facts, role)
            && inspect::private_key_public_key(key_pem).as_deref()
                == Some(facts.public_key.as_slice());
        good.then(|| Leaf {
            minted: Minted {
                cert_pem: cert_pem.to_owned(),
                key_pem: key_pem.to_owned(),
            },
            facts,
        })
    });
    if let Some(leaf) = stored {
        return Ok(leaf);
    }
    // A leaf never outlives the CA that vouches for it.
    let not_after = (now + settings.leaf_validity).min(ca.facts.not_after);
    let minted = mint::mint_leaf(
        settings.algorithm,
        role,
        &ca.minted,
        now - BACKDATE,
        not_after,
    )?;
    let facts = inspect::first_certificate(minted.cert_pem.as_bytes())?;
    Ok(Leaf { minted, facts })
}

/// The managed part of a plan.
pub(super) struct Managed {
    pub secrets: Vec<Secret>,
    pub certificates: CertificatesStatus,
    pub next_change: jiff::Timestamp,
}

fn info(facts: &CertFacts) -> CertificateInfo {
    CertificateInfo {
        serial: facts.serial.clone(),
        not_after: facts.not_after.to_string(),
    }
}

fn bytes(text: &str) -> ByteString {
    ByteString(text.as_bytes().to_vec())
}

pub(super) fn plan(
    names: &Names,
    settings: &Settings,
    existing: &BTreeMap<String, Secret>,
    now: jiff::Timestamp,
    pods_settled: bool,
) -> Result<Managed, PkiError> {
    let stored = read_ca_state(existing.get(&names.ca_secret()), now);
    let state = advance(stored, settings, now, pods_settled)?;
    let dns_names = names.aggregator_dns_names();
    let server = plan_leaf(
        existing.get(&names.aggregator_tls_secret()),
        &LeafRole::Server {
            dns_names: &dns_names,
        },
        &state.active,
        settings,
        now,
    )?;
    let client = plan_leaf(
        existing.get(&names.agent_tls_secret()),
        &LeafRole::Client {
            common_name: &settings.client_common_name,
        },
        &state.active,
        settings,
        now,
    )?;

    let mut ca_data = BTreeMap::from([
        (CA_CERT_KEY.to_owned(), bytes(&state.active.minted.cert_pem)),
        (CA_KEY_KEY.to_owned(), bytes(&state.active.minted.key_pem)),
    ]);
    if let Some(next) = &state.next {
        ca_data.insert(NEXT_CA_CERT_KEY.to_owned(), bytes(&next.minted.cert_pem));
        ca_data.insert(NEXT_CA_KEY_KEY.to_owned(), bytes(&next.minted.key_pem));
    }
    if let Some((pem, _)) = &state.previous {
        ca_data.insert(PREVIOUS_CA_CERT_KEY.to_owned(), bytes(pem));
    }
    let mut ca_secret = secret(names, &names.ca_secret(), OPAQUE, ca_data);
    ca_secret.metadata.annotations = Some(BTreeMap::from([
        (
            CA_ROTATION_PHASE_ANNOTATION.to_owned(),
            state.phase.as_str().to_owned(),
        ),
        (
            CA_ROTATION_SINCE_ANNOTATION.to_owned(),
            state.since.to_string(),
        ),
    ]));

    let bundle = state.bundle();
    let leaf_secret = |name: String, leaf: &Leaf| {
        secret(
            names,
            &name,
            TLS_SECRET_TYPE,
            BTreeMap::from([
                (CA_CERT_KEY.to_owned(), bytes(&bundle)),
                (TLS_CERT_KEY.to_owned(), bytes(&leaf.minted.cert_pem)),
                (TLS_KEY_KEY.to_owned(), bytes(&leaf.minted.key_pem)),
            ]),
        )
    };
    let secrets = vec![
        ca_secret,
        leaf_secret(names.aggregator_tls_secret(), &server),
        leaf_secret(names.agent_tls_secret(), &client),
    ];

    let step = match state.phase {
        Phase::Stable => state.active.facts.renew_at(settings.renew_at_percent),
        Phase::Introducing | Phase::Reissuing | Phase::Retiring => {
            let delay_over = state.since + PROPAGATION_DELAY;
            if pods_settled || now >= state.since + MAX_ROLLOUT_WAIT {
                delay_over
            } else {
                // Waiting for a rollout: the workloads' watch usually wakes us first.
                delay_over
                    .max(now + ROLLOUT_RECHECK)
                    .min(state.since + MAX_ROLLOUT_WAIT)
            }
        }
    };
    let next_change = [
        step,
        server.facts.renew_at(settings.renew_at_percent),
        client.facts.renew_at(settings.renew_at_percent),
    ]
    .into_iter()
    .min()
    .unwrap_or(step);

    let certificates = CertificatesStatus {
        ca: Some(info(&state.active.facts)),
        server: Some(info(&server.facts)),
        client: Some(info(&client.facts)),
        rotation_phase: Some(state.phase.as_str().to_owned()),
        next_rotation: Some(next_change.to_string()),
    };
    Ok(Managed {
        secrets,
        certificates,
        next_change,
    })
}
