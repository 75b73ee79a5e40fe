//! Reads certificates back (x509-parser), so that every decision the planner takes is derived
//! from what is stored, and a restarted operator continues where it stopped.

use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::pem::Pem;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::api::KeyAlgorithm;

/// What Sluice needs to know about one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Hex serial number.
    pub serial: String,
    pub not_before: jiff::Timestamp,
    pub not_after: jiff::Timestamp,
    /// Raw DER of subject and issuer names, to match leaves to their CA.
    pub subject: Vec<u8>,
    pub issuer: Vec<u8>,
    /// Raw DER SubjectPublicKeyInfo, to match a certificate to its private key.
    pub public_key: Vec<u8>,
    pub is_ca: bool,
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    /// Extended key usages; `None` when the extension is absent (any usage allowed).
    pub server_auth: Option<bool>,
    pub client_auth: Option<bool>,
    /// The minted algorithm this key corresponds to, if any.
    pub key_algorithm: Option<KeyAlgorithm>,
}

impl CertFacts {
    /// The instant at which this certificate is due for renewal: `percent` of its lifetime
    /// after `not_before`.
    pub fn renew_at(&self, percent: u8) -> jiff::Timestamp {
        let lifetime = self.not_after.as_second() - self.not_before.as_second();
        let offset = lifetime.saturating_mul(i64::from(percent)) / 100;
        jiff::Timestamp::from_second(self.not_before.as_second().saturating_add(offset))
            .unwrap_or(self.not_after)
    }

    /// Whether `now` lies within the validity period.
    pub fn valid_at(&self, now: jiff::Timestamp) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Whether this certificate names `ca` as its issuer.
    pub fn issued_by(&self, ca: &CertFacts) -> bool {
        self.issuer == ca.subject
    }
}

/// Why a PEM text could not be read.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum InspectError {
    #[error("no PEM certificate found")]
    Empty,
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("invalid certificate: {0}")]
    Certificate(String),
}

/// Every certificate in a PEM text (a single certificate or a bundle), in order.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertFacts>, InspectError> {
    let mut facts = Vec::new();
    for block in Pem::iter_from_buffer(pem) {
        let block = block.map_err(|error| InspectError::Pem(error.to_string()))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        facts.push(certificate_der(&block.contents)?);
    }
    if facts.is_empty() {
        return Err(InspectError::Empty);
    }
    Ok(facts)
}

/// The first certificate of a PEM text.
pub fn first_certificate(pem: &[u8]) -> Result<CertFacts, InspectError> {
    certificates(pem)?
        .into_iter()
        .next()
        .ok_or(InspectError::Empty)
}

/// Reads one DER certificate.
pub fn certificate_der(der: &[u8]) -> Result<CertFacts, InspectError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|error| InspectError::Certificate(error.to_string()))?;
    let timestamp = |seconds: i64| {
        jiff::Timestamp::from_second(seconds)
            .map_err(|error| InspectError::Certificate(error.to_string()))
    };
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(error) => return Err(InspectError::Certificate(error.to_string())),
    };
    let (server_auth, client_auth) = match cert.extended_key_usage() {
        Ok(Some(eku)) => (
            Some(eku.value.any || eku.value.server_auth),
            Some(eku.value.any || eku.value.client_auth),
        ),
        Ok(None) => (None, None),
        Err(error) => return Err(InspectError::Certificate(error.to_string())),
    };
    Ok(CertFacts {
        der: der.to_vec(),
        serial: hex::encode(cert.raw_serial()),
        not_before: timestamp(cert.validity().not_before.timestamp())?,
        not_after: timestamp(cert.validity().not_after.timestamp())?,
        subject: cert.subject().as_raw().to_vec(),
        issuer: cert.issuer().as_raw().to_vec(),
        public_key: cert.public_key().raw.to_vec(),
        is_ca: cert.is_ca(),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        dns_names,
        server_auth,
        client_auth,
        key_algorithm: key_algorithm(&cert),
    })
}

fn key_algorithm(cert: &X509Certificate<'_>) -> Option<KeyAlgorithm> {
    let spki = cert.public_key();
    let oid = &spki.algorithm.algorithm;
    if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
        if curve == OID_EC_P256 {
            Some(KeyAlgorithm::EcdsaP256)
        } else if curve == OID_NIST_EC_P384 {
            Some(KeyAlgorithm::EcdsaP384)
        } else {
            None
        }
    } else if *oid == OID_SIG_ED25519 {
        Some(KeyAlgorithm::Ed25519)
    } else if *oid == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed().ok()? {
            PublicKey::RSA(rsa) => match rsa.key_size() {
                2048 => Some(KeyAlgorithm::Rsa2048),
                3072 => Some(KeyAlgorithm::Rsa3072),
                4096 => Some(KeyAlgorithm::Rsa4096),
                _ => None,
            },
            _ => None,
        }
    } else {
        None
    }
}

/// The SubjectPublicKeyInfo (DER) of a PEM private key, to check it belongs to a certificate;
/// `None` if the key cannot be read.
pub fn private_key_public_key(key_pem: &str) -> Option<Vec<u8>> {
    let key = rcgen::KeyPair::from_pem(key_pem).ok()?;
    Some(rcgen::PublicKeyData::subject_public_key_info(&key))
}
