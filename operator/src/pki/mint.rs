//! Mints keys and certificates with rcgen (ring), RSA keys with the `rsa` crate.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, SignatureAlgorithm,
};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};

use crate::api::KeyAlgorithm;

use super::PkiError;

/// Issued certificates are valid from this long before "now", so that a pod whose clock runs
/// slightly behind the operator's does not reject a fresh certificate as not yet valid.
pub const BACKDATE: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Minted {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Who a leaf certificate identifies.
#[derive(Clone, Debug)]
pub enum LeafRole<'a> {
    /// The aggregator: `serverAuth`, these DNS names as SANs (the first is also the CN).
    Server { dns_names: &'a [String] },
    /// The agents: `clientAuth`, this common name.
    Client { common_name: &'a str },
}

fn signature_algorithm(algorithm: KeyAlgorithm) -> &'static SignatureAlgorithm {
    match algorithm {
        KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
            &rcgen::PKCS_RSA_SHA256
        }
    }
}

fn rsa_bits(algorithm: KeyAlgorithm) -> Option<usize> {
    match algorithm {
        KeyAlgorithm::Rsa2048 => Some(2048),
        KeyAlgorithm::Rsa3072 => Some(3072),
        KeyAlgorithm::Rsa4096 => Some(4096),
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 | KeyAlgorithm::Ed25519 => None,
    }
}

/// A fresh private key. RSA takes from milliseconds (2048) to seconds (4096): async callers
/// run the planner on a blocking thread.
pub fn generate_key(algorithm: KeyAlgorithm) -> Result<KeyPair, PkiError> {
    let signature = signature_algorithm(algorithm);
    match rsa_bits(algorithm) {
        // ring cannot generate RSA keys; the `rsa` crate can, and rcgen signs with the PKCS#8.
        Some(bits) => {
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits)
                .map_err(|error| PkiError::KeyGeneration(error.to_string()))?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|error| PkiError::KeyGeneration(error.to_string()))?;
            Ok(KeyPair::from_pkcs8_pem_and_sign_algo(&pem, signature)?)
        }
        None => Ok(KeyPair::generate_for(signature)?),
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // A positive DER INTEGER without a leading zero byte: top bit clear, first byte non-zero.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn offset_date_time(at: jiff::Timestamp) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(at.as_second())
        .map_err(|_| PkiError::TimeOutOfRange(at))
}

fn base_params(
    common_name: &str,
    not_before: jiff::Timestamp,
    not_after: jiff::Timestamp,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::OrganizationName, "Sluice");
    subject.push(DnType::CommonName, common_name);
    params.distinguished_name = subject;
    params.serial_number = Some(random_serial());
    params.not_before = offset_date_time(not_before)?;
    params.not_after = offset_date_time(not_after)?;
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// A self-signed CA allowed to sign certificates, and nothing below it to sign further.
pub fn mint_ca(
    algorithm: KeyAlgorithm,
    common_name: &str,
    not_before: jiff::Timestamp,
    not_after: jiff::Timestamp,
) -> Result<Minted, PkiError> {
    let key = generate_key(algorithm)?;
    let mut params = base_params(common_name, not_before, not_after)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok(Minted {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A leaf certificate with a fresh key, signed by `ca`.
pub fn mint_leaf(
    algorithm: KeyAlgorithm,
    role: &LeafRole<'_>,
    ca: &Minted,
    not_before: jiff::Timestamp,
    not_after: jiff::Timestamp,
) -> Result<Minted, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, &ca_key)?;
    let key = generate_key(algorithm)?;
    let mut params = match role {
        LeafRole::Server { dns_names } => {
            let common_name = dns_names
                .first()
                .map(String::as_str)
                .unwrap_or("aggregator");
            let mut params = base_params(common_name, not_before, not_after)?;
            params.subject_alt_names = dns_names
                .iter()
                .map(|name| Ok(SanType::DnsName(name.as_str().try_into()?)))
                .collect::<Result<_, rcgen::Error>>()?;
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params
        }
        LeafRole::Client { common_name } => {
            let mut params = base_params(common_name, not_before, not_after)?;
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params
        }
    };
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if rsa_bits(algorithm).is_some() {
        // TLS 1.2 RSA key exchange needs it; harmless otherwise.
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Minted {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
