//! The TLS spec with every default filled in and every value checked.

use crate::api::{KeyAlgorithm, TlsMode, TlsSpec, TlsVersion};
use crate::model::Problem;

pub const DEFAULT_CA_VALIDITY: &str = "43800h";
pub const DEFAULT_LEAF_VALIDITY: &str = "2160h";
pub const DEFAULT_RENEW_AT_PERCENT: u8 = 66;
pub const DEFAULT_CLIENT_COMMON_NAME: &str = "fluent-bit";
/// Shorter lifetimes leave no room for the propagation delays of a rotation.
const MIN_LEAF_VALIDITY: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);
const MIN_CA_VALIDITY: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// The effective TLS settings of one Logging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub mode: TlsMode,
    pub algorithm: KeyAlgorithm,
    pub ca_validity: jiff::SignedDuration,
    pub leaf_validity: jiff::SignedDuration,
    pub renew_at_percent: u8,
    pub client_common_name: String,
    /// Regular expression a client common name must fully match.
    pub allowed_client_names: String,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
}

fn problem(field: &str, message: String) -> Problem {
    Problem {
        reason: "InvalidTlsSettings",
        field: format!("spec.tls.{field}"),
        message,
    }
}

fn duration(
    field: &str,
    value: Option<&str>,
    default: &str,
    minimum: jiff::SignedDuration,
    problems: &mut Vec<Problem>,
) -> jiff::SignedDuration {
    let parse = |text: &str| {
        humantime::parse_duration(text)
            .map_err(|error| error.to_string())
            .and_then(|std| jiff::SignedDuration::try_from(std).map_err(|e| e.to_string()))
    };
    let fallback = parse(default).unwrap_or(minimum);
    let Some(text) = value else {
        return fallback;
    };
    match parse(text) {
        Ok(parsed) if parsed >= minimum => parsed,
        Ok(_) => {
            problems.push(problem(
                field,
                format!("{text} is shorter than the minimum of {minimum:#}; using {default}"),
            ));
            fallback
        }
        Err(error) => {
            problems.push(problem(
                field,
                format!("cannot parse duration {text:?} ({error}); using {default}"),
            ));
            fallback
        }
    }
}

impl Settings {
    /// Effective settings, and a problem for every value that had to be replaced.
    pub fn from_spec(tls: &TlsSpec) -> (Self, Vec<Problem>) {
        let mut problems = Vec::new();
        let ca_validity = duration(
            "caValidity",
            tls.ca_validity.as_deref(),
            DEFAULT_CA_VALIDITY,
            MIN_CA_VALIDITY,
            &mut problems,
        );
        let leaf_validity = duration(
            "leafValidity",
            tls.leaf_validity.as_deref(),
            DEFAULT_LEAF_VALIDITY,
            MIN_LEAF_VALIDITY,
            &mut problems,
        );
        let renew_at_percent = match tls.renew_at_percent {
            Some(percent) if (10..=95).contains(&percent) => percent,
            Some(percent) => {
                problems.push(problem(
                    "renewAtPercent",
                    format!("{percent} is outside 10..=95; using {DEFAULT_RENEW_AT_PERCENT}"),
                ));
                DEFAULT_RENEW_AT_PERCENT
            }
            None => DEFAULT_RENEW_AT_PERCENT,
        };
        let client_common_name = tls
            .client_common_name
            .clone()
            .unwrap_or_else(|| DEFAULT_CLIENT_COMMON_NAME.to_owned());
        let allowed_client_names = allowed_client_names(tls);
        if let Err(error) = regex::Regex::new(&allowed_client_names) {
            problems.push(problem(
                "allowedClientNames",
                format!("not a valid regular expression: {error}"),
            ));
        } else if !super::client_name_allowed(&allowed_client_names, &client_common_name) {
            problems.push(problem(
                "allowedClientNames",
                format!(
                    "does not match the agents' own common name {client_common_name:?}: the aggregator would reject them"
                ),
            ));
        }
        let min_version = tls.min_version.unwrap_or(TlsVersion::Tls12);
        let max_version = tls.max_version.unwrap_or(TlsVersion::Tls13);
        if min_version > max_version {
            problems.push(problem(
                "minVersion",
                "is higher than maxVersion: no TLS version is left to negotiate".to_owned(),
            ));
        }
        let settings = Self {
            mode: tls.mode.unwrap_or_default(),
            algorithm: tls.key_algorithm.unwrap_or_default(),
            ca_validity,
            leaf_validity,
            renew_at_percent,
            client_common_name,
            allowed_client_names,
            min_version,
            max_version,
        };
        (settings, problems)
    }
}

/// The regular expression client common names must fully match: `allowedClientNames`, or
/// exactly the agents' own common name.
pub fn allowed_client_names(tls: &TlsSpec) -> String {
    match &tls.allowed_client_names {
        Some(pattern) => pattern.clone(),
        None => regex::escape(
            tls.client_common_name
                .as_deref()
                .unwrap_or(DEFAULT_CLIENT_COMMON_NAME),
        ),
    }
}
