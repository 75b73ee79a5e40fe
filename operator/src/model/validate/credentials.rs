//! TLS material an output's Secrets hold, read the way the pinned plugins read it. Several
//! load it when fluentd starts and raise on what they cannot use, which stops the shared
//! aggregator: grafana-loki 1.2.20 (`configure`: `OpenSSL::PKey.read`, then anything but RSA
//! or DSA raises "Unsupported private key type"), splunk-hec 1.3.3 (`start`:
//! `OpenSSL::PKey::RSA.new`, so any other key raises), kafka2 through ruby-kafka (`start`
//! builds the SSL context: `X509::Certificate.new` for the CA and the client certificate,
//! `PKey.read` for the key), out_http (`configure`: the first PEM certificate of the file,
//! `PKey.read` for the key). forward and elasticsearch/opensearch read the client certificate
//! and key on each connection, where a bad one fails every flush: refused as well, so a
//! credential that can never work is reported on its object. CA bundles are checked for
//! kafka only (see `check`).

use x509_parser::der_parser::parse_der;
use x509_parser::pem::Pem;

use crate::api::{OutputKind, SecretKeyRef};
use crate::pki::inspect;

/// What a referenced Secret value is used as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Ca,
    Cert,
    Key,
}

impl Role {
    /// The role of an output's TLS Secret reference, by its field path (see
    /// `model::secret_refs`); `None` for passwords, tokens and keys of other kinds.
    pub fn of_field(field: &str) -> Option<Role> {
        if field.ends_with(".tls.caSecretRef") {
            Some(Role::Ca)
        } else if field.ends_with(".tls.certSecretRef") {
            Some(Role::Cert)
        } else if field.ends_with(".tls.keySecretRef") {
            Some(Role::Key)
        } else {
            None
        }
    }
}

const UNKNOWN: &str = "unknown";

/// Private key algorithms, as OpenSSL tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyType {
    Rsa,
    Dsa,
    Ec,
    Other(&'static str),
}

impl KeyType {
    fn name(self) -> &'static str {
        match self {
            KeyType::Rsa => "RSA",
            KeyType::Dsa => "DSA",
            KeyType::Ec => "EC",
            KeyType::Other(name) => name,
        }
    }
}

/// The value of an output's Secret reference at `field` (a path below `spec`, see
/// `model::secret_refs`) if it is TLS material the plugin can load, or the reason and
/// message of the problem.
pub fn usable(
    kind: OutputKind<'_>,
    field: &str,
    namespace: &str,
    reference: &SecretKeyRef,
    value: Vec<u8>,
) -> Result<Vec<u8>, (&'static str, String)> {
    let result = match Role::of_field(field) {
        Some(role) => check(kind, role, &value),
        // The token goes into every request's Authorization header.
        None if field == "splunkHec.tokenSecretRef" => {
            super::outputs::header_value(&String::from_utf8_lossy(chomp(&value)))
        }
        None => Ok(()),
    };
    match result {
        Ok(()) => Ok(value),
        Err(reason) => Err((
            "InvalidCredential",
            format!(
                "key {:?} of Secret {namespace}/{} is {reason}",
                reference.key, reference.name
            ),
        )),
    }
}

/// What Ruby's `String#chomp` leaves: one trailing `\r\n`, `\n` or `\r` removed (the renderer
/// reads value Secrets with `File.read(…).chomp`).
fn chomp(value: &[u8]) -> &[u8] {
    value
        .strip_suffix(b"\r\n")
        .or_else(|| value.strip_suffix(b"\n"))
        .or_else(|| value.strip_suffix(b"\r"))
        .unwrap_or(value)
}

/// Checks a Secret value used as `role` by an output of `kind`.
pub fn check(kind: OutputKind<'_>, role: Role, value: &[u8]) -> Result<(), String> {
    match role {
        // Only ruby-kafka reads the CA when fluentd starts; elsewhere a bad bundle fails the
        // connections of its own output, which then backs up its own buffer only.
        Role::Ca if !matches!(kind, OutputKind::Kafka(_)) => Ok(()),
        Role::Ca | Role::Cert => inspect::certificates(value)
            .map(|_| ())
            .map_err(|error| format!("not a PEM certificate OpenSSL reads: {error}")),
        Role::Key => {
            let key = private_key(value)?;
            let name = key.name();
            match kind {
                OutputKind::Loki(_) if !matches!(key, KeyType::Rsa | KeyType::Dsa) => Err(format!(
                    "a {name} key; fluentd refuses it: grafana-loki's configure raises \"Unsupported private key type\" for any key but RSA or DSA"
                )),
                OutputKind::SplunkHec(_) if key != KeyType::Rsa => Err(format!(
                    "a {name} key; fluentd refuses it: splunk_hec's start loads the key with OpenSSL::PKey::RSA.new, which raises for any key but RSA"
                )),
                _ if key == KeyType::Other(UNKNOWN) => {
                    Err("a private key of an algorithm OpenSSL does not know".to_owned())
                }
                _ => Ok(()),
            }
        }
    }
}

/// The type of the first PEM private key in `value`.
fn private_key(value: &[u8]) -> Result<KeyType, String> {
    for block in Pem::iter_from_buffer(value) {
        let block = block.map_err(|error| format!("not a PEM private key: {error}"))?;
        let der = block.contents.as_slice();
        let sequence = || {
            parse_der(der)
                .ok()
                .filter(|(rest, _)| rest.is_empty())
                .map(|_| ())
                .ok_or_else(|| format!("the {} block is not DER", block.label))
        };
        return match block.label.as_str() {
            "RSA PRIVATE KEY" => rsa::pkcs1::RsaPrivateKey::try_from(der)
                .map(|_| KeyType::Rsa)
                .map_err(|error| format!("not an RSA private key: {error}")),
            "DSA PRIVATE KEY" => sequence().map(|()| KeyType::Dsa),
            "EC PRIVATE KEY" => sequence().map(|()| KeyType::Ec),
            "ENCRYPTED PRIVATE KEY" => {
                Err("the key is encrypted, and fluentd is given no passphrase for it".to_owned())
            }
            "PRIVATE KEY" => pkcs8(der),
            _ => continue,
        };
    }
    Err("no PEM private key (-----BEGIN PRIVATE KEY-----) in it".to_owned())
}

/// The algorithm of a PKCS#8 key, by its OID; an RSA key must also hold an RSA key.
fn pkcs8(der: &[u8]) -> Result<KeyType, String> {
    let info = rsa::pkcs8::PrivateKeyInfo::try_from(der)
        .map_err(|error| format!("not a PKCS#8 private key: {error}"))?;
    let key = match info.algorithm.oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => {
            rsa::pkcs1::RsaPrivateKey::try_from(info.private_key)
                .map_err(|error| format!("not an RSA private key: {error}"))?;
            KeyType::Rsa
        }
        "1.2.840.10040.4.1" => KeyType::Dsa,
        "1.2.840.10045.2.1" => KeyType::Ec,
        "1.3.101.112" => KeyType::Other("Ed25519"),
        "1.3.101.113" => KeyType::Other("Ed448"),
        "1.2.840.113549.1.1.10" => KeyType::Other("RSA-PSS"),
        _ => KeyType::Other(UNKNOWN),
    };
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::{KeyType, private_key};
    use crate::api::KeyAlgorithm;
    use crate::pki::mint::generate_key;

    #[test]
    fn key_types_are_told_apart() {
        for (algorithm, expected) in [
            (KeyAlgorithm::Rsa2048, KeyType::Rsa),
            (KeyAlgorithm::EcdsaP256, KeyType::Ec),
            (KeyAlgorithm::Ed25519, KeyType::Other("Ed25519")),
        ] {
            let pem = generate_key(algorithm)
                .map(|k| k.serialize_pem())
                .unwrap_or_default();
            assert_eq!(private_key(pem.as_bytes()), Ok(expected), "{algorithm:?}");
        }
        assert!(private_key(b"garbage").is_err());
        let truncated = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(private_key(truncated.as_bytes()).is_err());
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(private_key(encrypted.as_bytes()).is_err());
    }
}
