//! Output parameters the pinned plugins check when fluentd starts.

use std::sync::LazyLock;

use regex::Regex;

use crate::api::OutputKind;
use crate::model::{Problem, problem};

/// fluentd's `CHUNK_TAG_PLACEHOLDER_PATTERN` and `CHUNK_KEY_PLACEHOLDER_PATTERN`
/// (lib/fluent/plugin/output.rb).
static TAG_PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\$\{(tag(?:\[-?[0-9]+\])?)\}").unwrap_or_else(|_| unreachable!())
});
static KEY_PLACEHOLDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\{([-_.@$a-zA-Z0-9]+)\}").unwrap_or_else(|_| unreachable!()));

/// The time placeholders out_file looks for when the buffer is cut per hour (its
/// `timekey_to_timeformat(3600)`): a path holding some of them must hold all.
const HOURLY_PLACEHOLDERS: [&str; 4] = ["%Y", "%m", "%d", "%H"];

/// Problems of the kind's own parameters.
pub fn validate_kind(kind: OutputKind<'_>) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let OutputKind::File(file) = kind
        && let Err(reason) = file_path(&file.path)
    {
        problems.push(problem(
            "InvalidPath",
            "spec.file.path",
            format!(
                "{:?} is not a path fluentd's file output accepts: {reason}",
                file.path
            ),
        ));
    }
    if let OutputKind::S3(s3) = kind
        && let Some(endpoint) = &s3.endpoint
        && is_aws_endpoint(endpoint)
    {
        problems.push(problem(
            "InvalidEndpoint",
            "spec.s3.endpoint",
            "fluentd refuses it: s3_endpoint parameter is not supported for S3, use s3_region instead. This parameter is for S3 compatible services",
        ));
    }
    if let OutputKind::Loki(loki) = kind {
        // out_loki.rb turns each label's value (or, when empty, its name) into a record
        // accessor when it is configured.
        for (name, path) in &loki.labels {
            let accessor = if path.is_empty() { name } else { path };
            if let Err(reason) = super::record_accessor::check(accessor) {
                problems.push(problem(
                    "InvalidKey",
                    format!("spec.loki.labels.{name}"),
                    format!("{accessor:?} is not a record accessor fluentd accepts: {reason}"),
                ));
            }
        }
    }
    problems
}

/// fluent-plugin-s3 1.8.4 (`reject_s3_endpoint?` in out_s3.rb) refuses an endpoint of AWS S3
/// itself, other than VPC endpoints and FIPS or GovCloud ones: AWS is addressed by region.
fn is_aws_endpoint(endpoint: &str) -> bool {
    !endpoint.ends_with("vpce.amazonaws.com")
        && endpoint.ends_with("amazonaws.com")
        && !endpoint.contains("fips")
        && !endpoint.contains("gov")
}

/// Checks a `file` output path as out_file's `configure` does with the buffer Sluice
/// renders (chunk key `time`, `timekey 1h`, no `tag` or record chunk keys): the path is a
/// strftime template validated against the chunk keys (`placeholder_validate!` in
/// lib/fluent/plugin/output.rb, `generate_path_template` in out_file.rb). `#{…}` needs no
/// check: the renderer escapes `#`, so it is never evaluated.
pub fn file_path(path: &str) -> Result<(), String> {
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        // Other strftime directives are legal for fluentd, but some (`%%H`, huge widths)
        // defeat its timestamp check or raise; these six are all a log path needs.
        if c == '%' && !matches!(chars.next(), Some('Y' | 'm' | 'd' | 'H' | 'M' | 'S')) {
            return Err(
                "'%' starts a strftime directive there; Sluice accepts only %Y, %m, %d, %H, %M and %S"
                    .to_owned(),
            );
        }
    }
    // With `*`, out_file puts the time there; without, it appends `.%Y%m%d%H` unless the
    // path already has the hourly placeholders, which it then wants complete.
    if !path.contains('*') {
        let present = HOURLY_PLACEHOLDERS
            .iter()
            .filter(|p| path.contains(*p))
            .count();
        if present > 0 && present < HOURLY_PLACEHOLDERS.len() {
            return Err(
                "fluentd refuses it: insufficient timestamp placeholders in path (use all of %Y, %m, %d and %H, or none)"
                    .to_owned(),
            );
        }
    }
    if let Some(found) = TAG_PLACEHOLDER.find(path) {
        return Err(format!(
            "fluentd refuses it: has tag placeholders, but chunk key 'tag' is not configured ({})",
            found.as_str()
        ));
    }
    if let Some(key) = KEY_PLACEHOLDER
        .captures_iter(path)
        .filter_map(|c| c.get(1))
        .map(|m| m.as_str())
        .find(|key| *key != "tag" && *key != "chunk_id")
    {
        return Err(format!(
            "fluentd refuses it: has placeholders, but chunk keys doesn't have keys {key}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{file_path, is_aws_endpoint};

    #[test]
    fn s3_endpoints_of_aws_itself_are_refused_like_out_s3() {
        assert!(is_aws_endpoint("https://s3.eu-west-1.amazonaws.com"));
        assert!(!is_aws_endpoint("https://bucket.vpce.amazonaws.com"));
        assert!(!is_aws_endpoint("https://s3-fips.us-east-1.amazonaws.com"));
        assert!(!is_aws_endpoint("https://minio.example:9000"));
    }

    #[test]
    fn file_paths_follow_out_file() {
        for path in [
            "app/log",
            "app/%Y/%m/%d/%H/log",
            "app/%Y%m%d%H%M",
            "app/*.log",
            "app/%Y/*",
            "app/${chunk_id}",
            "app/#{ENV}",
            "app/${not a key}",
        ] {
            assert_eq!(file_path(path), Ok(()), "{path}");
        }
        for (path, reason) in [
            ("app/%Y/log", "insufficient timestamp placeholders"),
            ("app/%d-%H", "insufficient timestamp placeholders"),
            ("app/${tag}", "chunk key 'tag' is not configured"),
            ("app/${tag[1]}", "chunk key 'tag' is not configured"),
            (
                "app/${kubernetes.pod}",
                "chunk keys doesn't have keys kubernetes.pod",
            ),
            ("app/%%H", "strftime"),
            ("app/%j", "strftime"),
            ("app/100%", "strftime"),
        ] {
            let error = file_path(path).err().unwrap_or_default();
            assert!(error.contains(reason), "{path}: {error}");
        }
    }
}
