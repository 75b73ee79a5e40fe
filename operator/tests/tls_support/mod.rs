//! Shared by the `tls_*` integration tests: planning with a simulated clock, reading the
//! planned Secrets, and real rustls handshakes in memory at a chosen instant.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, ServerConnection, SignatureScheme, SupportedProtocolVersion,
};
use sluice::api::TlsSpec;
use sluice::layout::{CA_CERT_KEY, Names, TLS_CERT_KEY, TLS_KEY_KEY};
use sluice::pki::{self, PkiPlan, PkiRequest};

pub fn names() -> Names {
    Names::new("main", "logging")
}

/// A fixed starting instant, so failures reproduce.
pub fn start() -> jiff::Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

pub fn plan_at(
    names: &Names,
    tls: &TlsSpec,
    now: jiff::Timestamp,
    existing: &BTreeMap<String, Secret>,
) -> PkiPlan {
    pki::plan(&PkiRequest {
        names,
        tls,
        now,
        existing,
        rollout: pki::Rollout::Unobserved,
    })
    .unwrap()
}

/// The planned Secrets as the API server would return them: through JSON and back, so that
/// nothing but what is stored survives (a restarted operator sees exactly this).
pub fn stored(plan: &PkiPlan) -> BTreeMap<String, Secret> {
    plan.secrets
        .iter()
        .map(|secret| {
            let json = serde_json::to_string(secret).unwrap();
            let secret: Secret = serde_json::from_str(&json).unwrap();
            (secret.metadata.name.clone().unwrap(), secret)
        })
        .collect()
}

pub fn secret<'a>(plan: &'a PkiPlan, name: &str) -> &'a Secret {
    plan.secrets
        .iter()
        .find(|secret| secret.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no Secret {name} in plan"))
}

pub fn value(secret: &Secret, key: &str) -> Vec<u8> {
    secret.data.as_ref().unwrap()[key].0.clone()
}

/// What one pod mounts: the bundle it trusts, its certificate chain and key.
#[derive(Clone, Debug, PartialEq)]
pub struct Peer {
    pub bundle: Vec<u8>,
    pub chain: Vec<u8>,
    pub key: Vec<u8>,
}

impl Peer {
    pub fn from_secret(secret: &Secret) -> Self {
        Self {
            bundle: value(secret, CA_CERT_KEY),
            chain: value(secret, TLS_CERT_KEY),
            key: value(secret, TLS_KEY_KEY),
        }
    }

    pub fn aggregator(plan: &PkiPlan) -> Self {
        Self::from_secret(secret(plan, &names().aggregator_tls_secret()))
    }

    pub fn agent(plan: &PkiPlan) -> Self {
        Self::from_secret(secret(plan, &names().agent_tls_secret()))
    }

    fn chain_der(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(&self.chain)
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(&self.key).unwrap()
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.bundle) {
            roots.add(cert.unwrap()).unwrap();
        }
        Arc::new(roots)
    }
}

#[derive(Debug)]
struct FixedTime(UnixTime);

impl rustls::time_provider::TimeProvider for FixedTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.0)
    }
}

/// The aggregator's client check as fluentd applies it: chain valid AND the leaf's common
/// name fully matches the allowed pattern (`pki::client_name_allowed`).
#[derive(Debug)]
struct CommonNameChecked {
    chain: Arc<dyn ClientCertVerifier>,
    pattern: String,
}

impl ClientCertVerifier for CommonNameChecked {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .chain
            .verify_client_cert(end_entity, intermediates, now)?;
        let facts = pki::inspect::certificate_der(end_entity)
            .map_err(|error| rustls::Error::General(error.to_string()))?;
        let common_name = facts.common_name.unwrap_or_default();
        if pki::client_name_allowed(&self.pattern, &common_name) {
            Ok(verified)
        } else {
            Err(rustls::Error::General(format!(
                "client common name {common_name:?} not allowed"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// How a handshake is attempted.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub at: jiff::Timestamp,
    pub server_name: String,
    pub server_versions: Vec<&'static SupportedProtocolVersion>,
    pub client_versions: Vec<&'static SupportedProtocolVersion>,
    /// Regular expression the aggregator applies to client common names.
    pub allowed_client_names: String,
    pub present_client_cert: bool,
}

impl Attempt {
    pub fn at(at: jiff::Timestamp) -> Self {
        Self {
            at,
            server_name: names().aggregator_host(),
            server_versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            client_versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            allowed_client_names: pki::allowed_client_names(&TlsSpec::default()),
            present_client_cert: true,
        }
    }
}

/// A full handshake between an aggregator holding `server` and an agent holding `client`,
/// in memory, with both sides' clocks at `attempt.at`, followed by one application record
/// each way. `Err` names the side that failed and why.
pub fn handshake(server: &Peer, client: &Peer, attempt: &Attempt) -> Result<(), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let time = Arc::new(FixedTime(UnixTime::since_unix_epoch(
        std::time::Duration::from_secs(attempt.at.as_second() as u64),
    )));

    let chain_verifier =
        WebPkiClientVerifier::builder_with_provider(server.roots(), provider.clone())
            .build()
            .unwrap();
    let server_config = ServerConfig::builder_with_details(provider.clone(), time.clone())
        .with_protocol_versions(&attempt.server_versions)
        .unwrap()
        .with_client_cert_verifier(Arc::new(CommonNameChecked {
            chain: chain_verifier,
            pattern: attempt.allowed_client_names.clone(),
        }))
        .with_single_cert(server.chain_der(), server.key_der())
        .map_err(|error| format!("server config: {error}"))?;

    let client_builder = ClientConfig::builder_with_details(provider, time)
        .with_protocol_versions(&attempt.client_versions)
        .unwrap()
        .with_root_certificates(client.roots());
    let client_config = if attempt.present_client_cert {
        client_builder
            .with_client_auth_cert(client.chain_der(), client.key_der())
            .map_err(|error| format!("client config: {error}"))?
    } else {
        client_builder.with_no_client_auth()
    };

    let server_name = ServerName::try_from(attempt.server_name.clone()).unwrap();
    let mut client_conn = ClientConnection::new(Arc::new(client_config), server_name)
        .map_err(|error| format!("client: {error}"))?;
    let mut server_conn = ServerConnection::new(Arc::new(server_config))
        .map_err(|error| format!("server: {error}"))?;

    use std::io::{Read, Write};
    client_conn.writer().write_all(b"ping").unwrap();
    let mut received_by_server = Vec::new();
    let mut received_by_client = Vec::new();
    let mut server_replied = false;
    for _ in 0..32 {
        let mut wire = Vec::new();
        while client_conn.wants_write() {
            client_conn.write_tls(&mut wire).unwrap();
        }
        let mut slice = &wire[..];
        while !slice.is_empty() {
            server_conn.read_tls(&mut slice).unwrap();
        }
        server_conn
            .process_new_packets()
            .map_err(|error| format!("server rejected: {error}"))?;
        let mut buf = [0u8; 64];
        if let Ok(n) = server_conn.reader().read(&mut buf) {
            received_by_server.extend_from_slice(&buf[..n]);
        }
        if received_by_server == b"ping" && !server_replied {
            server_conn.writer().write_all(b"pong").unwrap();
            server_replied = true;
        }

        let mut wire = Vec::new();
        while server_conn.wants_write() {
            server_conn.write_tls(&mut wire).unwrap();
        }
        let mut slice = &wire[..];
        while !slice.is_empty() {
            client_conn.read_tls(&mut slice).unwrap();
        }
        client_conn
            .process_new_packets()
            .map_err(|error| format!("client rejected: {error}"))?;
        if let Ok(n) = client_conn.reader().read(&mut buf) {
            received_by_client.extend_from_slice(&buf[..n]);
        }
        if received_by_client == b"pong" {
            return Ok(());
        }
    }
    Err("handshake did not complete".to_owned())
}

/// One plan of a simulated run, at the instant it was made.
#[derive(Clone, Debug)]
pub struct Step {
    pub at: jiff::Timestamp,
    pub plan: PkiPlan,
}

impl Step {
    pub fn phase(&self) -> &str {
        self.plan
            .certificates
            .rotation_phase
            .as_deref()
            .unwrap_or_default()
    }
}

/// Runs the planner from `from` until `until`, each plan fed the previous plan's Secrets
/// through JSON. It plans at every instant the previous plan named and halfway there,
/// asserting that the halfway plan changes nothing. Returns the plans at the named instants.
pub fn simulate(
    tls: &TlsSpec,
    from: jiff::Timestamp,
    until: jiff::Timestamp,
    existing: BTreeMap<String, Secret>,
) -> Vec<Step> {
    let names = names();
    let mut steps = vec![Step {
        at: from,
        plan: plan_at(&names, tls, from, &existing),
    }];
    for _ in 0..10_000 {
        let last = steps.last().unwrap();
        let next = last
            .plan
            .next_change
            .expect("managed plans name their next change");
        assert!(
            next > last.at,
            "next change {next} is not after {}",
            last.at
        );
        if next > until {
            return steps;
        }
        let current = stored(&last.plan);
        let halfway =
            last.at + jiff::SignedDuration::from_secs(next.duration_since(last.at).as_secs() / 2);
        let between = plan_at(&names, tls, halfway, &current);
        assert_eq!(
            between.secrets, last.plan.secrets,
            "plan at {halfway}, before the named change at {next}, rewrote Secrets"
        );
        assert_eq!(between.next_change, last.plan.next_change);
        assert_eq!(between.material_hash, last.plan.material_hash);
        let plan = plan_at(&names, tls, next, &current);
        steps.push(Step { at: next, plan });
    }
    panic!("simulation did not reach {until}");
}
