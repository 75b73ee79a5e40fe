//! Chain checks with rustls' WebPKI verifiers (ring): the same rules the TLS peers apply,
//! at an instant the caller chooses.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;

use super::inspect;

fn ders(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    Ok(inspect::certificates(pem)
        .map_err(|error| error.to_string())?
        .into_iter()
        .map(|facts| CertificateDer::from(facts.der))
        .collect())
}

fn roots(bundle_pem: &[u8]) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for der in ders(bundle_pem)? {
        roots
            .add(der)
            .map_err(|error| format!("CA bundle: {error}"))?;
    }
    Ok(Arc::new(roots))
}

fn unix_time(at: jiff::Timestamp) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(at.as_second()).unwrap_or(0),
    ))
}

fn split(
    chain_pem: &[u8],
) -> Result<(CertificateDer<'static>, Vec<CertificateDer<'static>>), String> {
    let mut chain = ders(chain_pem)?.into_iter();
    let leaf = chain.next().ok_or("no certificate")?;
    Ok((leaf, chain.collect()))
}

/// Whether a TLS client trusting `bundle_pem` accepts the server chain `chain_pem` for
/// `server_name` at `at` (chain, validity, `serverAuth`, SAN).
pub fn verify_server(
    bundle_pem: &[u8],
    chain_pem: &[u8],
    server_name: &str,
    at: jiff::Timestamp,
) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(bundle_pem)?, provider)
        .build()
        .map_err(|error| error.to_string())?;
    let (leaf, intermediates) = split(chain_pem)?;
    let name = ServerName::try_from(server_name.to_owned()).map_err(|error| error.to_string())?;
    verifier
        .verify_server_cert(&leaf, &intermediates, &name, &[], unix_time(at))
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// Whether a TLS server trusting `bundle_pem` accepts the client chain `chain_pem` at `at`
/// (chain, validity, `clientAuth`). The common-name rule is [`super::client_name_allowed`].
pub fn verify_client(
    bundle_pem: &[u8],
    chain_pem: &[u8],
    at: jiff::Timestamp,
) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(bundle_pem)?, provider)
        .build()
        .map_err(|error| error.to_string())?;
    let (leaf, intermediates) = split(chain_pem)?;
    verifier
        .verify_client_cert(&leaf, &intermediates, unix_time(at))
        .map(|_| ())
        .map_err(|error| error.to_string())
}
