//! Output parameters the pinned plugins check when fluentd starts.

use std::sync::LazyLock;

use regex::Regex;

use super::uri;
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
    problems.extend(url_problems(kind));
    if let OutputKind::Http(http) = kind {
        for (name, value) in &http.headers {
            if let Err(reason) = header(name, value) {
                problems.push(problem(
                    "InvalidHeader",
                    format!("spec.http.headers.{name}"),
                    reason,
                ));
            }
        }
    }
    if let OutputKind::Loki(loki) = kind
        && let Some(tenant) = &loki.tenant
        && let Err(reason) = header_value(tenant)
    {
        // Sent as X-Scope-OrgID on every push.
        problems.push(problem("InvalidHeader", "spec.loki.tenant", reason));
    }
    if let OutputKind::Kafka(kafka) = kind
        && let Some(tls) = &kafka.tls
        && tls.cert_secret_ref.is_some() != tls.key_secret_ref.is_some()
    {
        // ruby-kafka's SslContext.build, run by kafka2's `start`, raises ArgumentError.
        problems.push(problem(
            "InvalidCredential",
            "spec.kafka.tls",
            "fluentd refuses it: ruby-kafka needs both the client certificate and its key (certSecretRef and keySecretRef), or neither",
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

/// Addresses the plugins parse with Ruby's `URI` (see `uri`), each as its plugin builds it.
fn url_problems(kind: OutputKind<'_>) -> Vec<Problem> {
    let mut checks: Vec<(String, Result<(), String>)> = Vec::new();
    match kind {
        // out_loki's `configure` parses the URL with the push path appended and raises unless
        // it is HTTP(S).
        OutputKind::Loki(loki) => {
            let result = if loki.url.contains(['?', '#']) {
                // The push path would land in the query or fragment: every push misses.
                Err(
                    "a base URL without '?' or '#': the plugin appends /loki/api/v1/push"
                        .to_owned(),
                )
            } else {
                uri::http_url(&format!("{}/loki/api/v1/push", loki.url)).map(|_| ())
            };
            checks.push(("spec.loki.url".to_owned(), result));
        }
        // out_http parses the endpoint on every request: a value Ruby refuses never sends.
        OutputKind::Http(http) => checks.push((
            "spec.http.endpoint".to_owned(),
            uri::http_url(&http.endpoint).map(|_| ()),
        )),
        // aws-sdk's client, built in out_s3's `start`, raises on an endpoint that is not an
        // HTTP(S) URI.
        OutputKind::S3(s3) => {
            if let Some(endpoint) = &s3.endpoint {
                checks.push((
                    "spec.s3.endpoint".to_owned(),
                    uri::http_url(endpoint).map(|_| ()),
                ));
            }
        }
        OutputKind::Elasticsearch(search) | OutputKind::Opensearch(search) => {
            let name = if matches!(kind, OutputKind::Elasticsearch(_)) {
                "elasticsearch"
            } else {
                "opensearch"
            };
            for (i, host) in search.hosts.iter().enumerate() {
                checks.push((format!("spec.{name}.hosts[{i}]"), search_host(host)));
            }
        }
        OutputKind::Kafka(kafka) => {
            for (i, broker) in kafka.brokers.iter().enumerate() {
                checks.push((format!("spec.kafka.brokers[{i}]"), kafka_broker(broker)));
            }
        }
        // out_splunk's `configure` builds `https://<host>:<port>/services/collector` with
        // `URI()` and raises a ConfigError when Ruby refuses it.
        OutputKind::SplunkHec(hec) => {
            let port = hec.port.unwrap_or(8088);
            let url = format!("https://{}:{port}/services/collector", hec.host);
            let result = uri::http_url(&url).and_then(|parsed| {
                if parsed.host == Some(hec.host.as_str()) {
                    Ok(())
                } else {
                    Err("it is not a host name or address alone".to_owned())
                }
            });
            checks.push(("spec.splunkHec.host".to_owned(), result));
        }
        OutputKind::File(_) | OutputKind::Null | OutputKind::Stdout | OutputKind::Forward(_) => {}
    }
    checks
        .into_iter()
        .filter_map(|(field, result)| {
            result.err().map(|reason| {
                problem(
                    "InvalidUrl",
                    field,
                    format!("not an address the plugin can use: {reason}"),
                )
            })
        })
        .collect()
}

/// One entry of elasticsearch's (and opensearch's) `hosts`, read as `get_connection_options`
/// does: `host` or `host:port`, a bare IPv6 address, or else a URL given to `URI()` (after
/// `%{user}:%{password}@` is escaped, which always yields valid user information).
fn search_host(entry: &str) -> Result<(), String> {
    if entry.is_empty() || entry.contains(',') {
        return Err("hosts are one address each, without ','".to_owned());
    }
    if entry.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(());
    }
    if !entry.contains("://") {
        // The legacy form; the host becomes part of a URL on every request.
        let url = format!("http://{entry}");
        let parsed = uri::http_url(&url)?;
        return match parsed.userinfo.is_none() && !url[7..].contains('/') {
            true => Ok(()),
            false => Err("write host, host:port or a URL with a scheme".to_owned()),
        };
    }
    let escaped = match (entry.find("%{"), entry.rfind("}@")) {
        (Some(start), Some(end)) if start < end && entry[start..end].contains("}:%{") => {
            format!("{}u:p{}", &entry[..start], &entry[end + 1..])
        }
        _ => entry.to_owned(),
    };
    uri::http_url(&escaped).map(|_| ())
}

/// One of kafka2's `brokers`, as ruby-kafka's `BrokerUri.parse` reads it: `kafka://` is
/// prefixed when there is no scheme, and only its four schemes are accepted.
fn kafka_broker(broker: &str) -> Result<(), String> {
    let url = if broker.contains("://") {
        broker.to_owned()
    } else {
        format!("kafka://{broker}")
    };
    if broker.contains(',') {
        return Err("one broker per entry, without ','".to_owned());
    }
    let parsed = uri::parse(&url).map_err(|reason| format!("Ruby's URI refuses it: {reason}"))?;
    if !matches!(
        parsed.scheme.to_ascii_lowercase().as_str(),
        "kafka" | "kafka+ssl" | "plaintext" | "ssl"
    ) {
        return Err(format!("ruby-kafka refuses the scheme {:?}", parsed.scheme));
    }
    if parsed.host.is_none_or(str::is_empty) {
        return Err("it names no host".to_owned());
    }
    uri::check_port(parsed.port)
}

/// One of out_http's `headers`, set on every request: Ruby's net/http raises on CR or LF in a
/// value, and a name that is not an HTTP token (RFC 9110: no space, `:` or control character)
/// makes a request the server refuses, so the output could never send.
fn header(name: &str, value: &str) -> Result<(), String> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(tchar) {
        return Err(format!(
            "{name:?} is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    header_value(value)
}

/// A value Ruby's net/http sends as a header: it raises on CR or LF (and NUL ends it early).
pub fn header_value(value: &str) -> Result<(), String> {
    if value.contains(['\r', '\n', '\0']) {
        return Err("a header value cannot hold CR, LF or NUL: Ruby's net/http raises".to_owned());
    }
    Ok(())
}

/// fluent-plugin-s3 1.8.3, the default image's (`reject_s3_endpoint?` in out_s3.rb; 1.8.4 alike), refuses an endpoint of AWS S3
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
