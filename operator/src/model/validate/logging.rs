//! The Logging itself: names Sluice derives objects from, the TLS settings the aggregator
//! compiles, and the Logging's own filters.

use crate::api::{LoggingSpec, TlsMode};
use crate::model::{Problem, problem};
use crate::render::escape::is_dns_label;

use super::filters::validate_filters;
use super::regex;

/// The longest suffix Sluice appends to a Logging name (`-aggregator-headless`), so the
/// derived Service name still fits a 63-character DNS label.
const MAX_LOGGING_NAME_LEN: usize = 63 - "-aggregator-headless".len();

pub fn validate_logging(name: &str, spec: &LoggingSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !is_dns_label(name) || name.len() > MAX_LOGGING_NAME_LEN {
        problems.push(problem(
            "InvalidName",
            "metadata.name",
            format!("must be a DNS label of at most {MAX_LOGGING_NAME_LEN} characters, since Sluice derives Service names from it"),
        ));
    }
    if !is_dns_label(&spec.control_namespace) {
        problems.push(problem(
            "InvalidControlNamespace",
            "spec.controlNamespace",
            format!("{:?} is not a valid namespace name (lowercase letters, digits and '-', at most 63)", spec.control_namespace),
        ));
    }
    for (index, namespace) in spec.watch_namespaces.iter().enumerate() {
        if !is_dns_label(namespace) {
            problems.push(problem(
                "InvalidNamespace",
                format!("spec.watchNamespaces[{index}]"),
                format!("{namespace:?} is not a valid namespace name"),
            ));
        }
    }
    if let Some(tls) = &spec.tls {
        if tls.mode == Some(TlsMode::Disabled) {
            // A choice, not a fault: a warning (`Problem::is_warning`).
            problems.push(problem(
                "TlsDisabled",
                "spec.tls.mode",
                "TLS is disabled: agents send records to the aggregator in plain text, which anyone on the path can read and alter",
            ));
        }
        for (field, value) in [
            ("caValidity", &tls.ca_validity),
            ("leafValidity", &tls.leaf_validity),
        ] {
            if let Some(value) = value
                && humantime::parse_duration(value).is_err()
            {
                problems.push(problem(
                    "InvalidDuration",
                    format!("spec.tls.{field}"),
                    format!("{value:?} is not a duration such as 2160h"),
                ));
            }
        }
        if let Some(pattern) = &tls.allowed_client_names
            && let Err(reason) = regex::client_names_regexp(pattern)
        {
            problems.push(problem(
                "InvalidPattern",
                "spec.tls.allowedClientNames",
                format!(
                    "{pattern:?} is not a regular expression Ruby (fluentd) compiles once wrapped as \\A(?:…)\\z: {reason}"
                ),
            ));
        }
        if let (Some(min), Some(max)) = (tls.min_version, tls.max_version)
            && min > max
        {
            problems.push(problem(
                "InvalidTlsVersions",
                "spec.tls.minVersion",
                "minVersion is above maxVersion",
            ));
        }
    }
    problems.extend(validate_filters("spec.globalFilters", &spec.global_filters));
    if let Some(default_flow) = &spec.default_flow {
        problems.extend(validate_filters(
            "spec.defaultFlow.filters",
            &default_flow.filters,
        ));
    }
    problems
}
