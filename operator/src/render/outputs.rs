//! fluentd output plugins for each output kind, with credentials read from mounted files and
//! a file buffer per flow-output pair. Plugin and parameter names are listed in
//! docs/dataplane.md.

use std::sync::LazyLock;

use regex::Regex;

use crate::api::{BasicAuth, BufferSpec, OutputKind, OutputTls, OverflowAction, SecretKeyRef};
use crate::layout;
use crate::model::limits;
use crate::model::{ObjectKey, OutputPlan};

use super::escape::{
    checked, comment_text, fluentd_hash, fluentd_string, is_param_key, is_secret_file_name,
};
use super::filters::bool_str;
use super::writer::Writer;

/// Major server versions requests are formatted for when the Output names none.
pub const DEFAULT_ELASTICSEARCH_VERSION: i32 = 8;
pub const DEFAULT_OPENSEARCH_VERSION: i32 = 2;

static SIZE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9]+[kmgtKMGT]?$").unwrap_or_else(|_| unreachable!()));
static DURATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9]+[smhd]?$").unwrap_or_else(|_| unreachable!()));

/// Where a credential referenced by an output lives in the aggregator pod.
struct Secrets<'a> {
    plan: &'a OutputPlan,
}

impl Secrets<'_> {
    /// The mounted file's path, if the reference was resolved to a safe file name.
    fn path(&self, reference: &SecretKeyRef) -> Option<String> {
        let file = self.plan.secret_files.get(reference)?;
        is_secret_file_name(file).then(|| format!("{}/{file}", layout::RELOAD_SHARED_DIR))
    }

    /// A parameter value that reads the credential from its file when fluentd starts, so the
    /// value itself never appears in the configuration.
    fn value(&self, reference: &SecretKeyRef) -> Option<String> {
        // The path holds only [A-Za-z0-9._-] and the fixed directory, so it cannot leave the
        // Ruby single-quoted string.
        self.path(reference)
            .map(|path| format!("\"#{{File.read('{path}').chomp}}\""))
    }

    fn write_value(&self, w: &mut Writer, key: &str, reference: &SecretKeyRef) {
        match self.value(reference) {
            Some(value) => w.param(key, &value),
            None => w.comment(&format!("{key}: credential not mounted")),
        }
    }

    fn write_path(&self, w: &mut Writer, key: &str, reference: &SecretKeyRef) {
        match self.path(reference) {
            Some(path) => w.param(key, &fluentd_string(&path)),
            None => w.comment(&format!("{key}: file not mounted")),
        }
    }
}

/// Parameter names of one plugin's TLS options.
struct TlsKeys {
    ca: &'static str,
    cert: &'static str,
    key: &'static str,
    /// Key and the value that switches verification off.
    insecure: (&'static str, &'static str),
}

fn write_tls(w: &mut Writer, secrets: &Secrets<'_>, tls: Option<&OutputTls>, keys: &TlsKeys) {
    let Some(tls) = tls else { return };
    if let Some(ca) = &tls.ca_secret_ref {
        secrets.write_path(w, keys.ca, ca);
    }
    if let Some(cert) = &tls.cert_secret_ref {
        secrets.write_path(w, keys.cert, cert);
    }
    if let Some(key) = &tls.key_secret_ref {
        secrets.write_path(w, keys.key, key);
    }
    if tls.insecure_skip_verify == Some(true) {
        w.param(keys.insecure.0, keys.insecure.1);
    }
}

fn write_basic_auth(
    w: &mut Writer,
    secrets: &Secrets<'_>,
    auth: Option<&BasicAuth>,
    user_key: &str,
    password_key: &str,
) {
    if let Some(auth) = auth {
        w.param_str(user_key, &auth.username);
        secrets.write_value(w, password_key, &auth.password_secret_ref);
    }
}

/// The plugin type a kind renders to.
pub fn plugin_type(kind: &OutputKind<'_>) -> &'static str {
    match kind {
        OutputKind::File(_) => "file",
        OutputKind::Null => "null",
        OutputKind::Stdout => "stdout",
        OutputKind::Forward(_) => "forward",
        OutputKind::Http(_) => "http",
        OutputKind::Elasticsearch(_) => "elasticsearch",
        OutputKind::Opensearch(_) => "opensearch",
        OutputKind::Loki(_) => "loki",
        OutputKind::S3(_) => "s3",
        OutputKind::Kafka(_) => "kafka2",
        OutputKind::SplunkHec(_) => "splunk_hec",
    }
}

/// Writes the body of one output (inside `<store>` or `<match>`): `@type`, `@id`, the
/// kind's parameters and its `<buffer>` at `buffer_path`.
/// `flush_at_shutdown`: whether the output flushes its buffer when fluentd stops or reloads;
/// set where the buffer volume does not outlive the pod (docs/dataplane.md, "Delivery").
pub fn write_output(
    w: &mut Writer,
    plan: &OutputPlan,
    id: &str,
    buffer_path: &str,
    flush_at_shutdown: bool,
) {
    let Some(kind) = plan.spec.kind() else {
        w.param("@type", "null");
        w.param("@id", id);
        w.comment("output sets no kind");
        return;
    };
    let secrets = Secrets { plan };
    w.param("@type", plugin_type(&kind));
    w.param("@id", id);
    // Whether the kind carries a time chunk key (files and objects are cut per hour).
    let mut time_chunks = false;
    let mut buffered = true;
    match kind {
        OutputKind::File(file) => {
            w.param_str("path", &file_output_path(&plan.key, &file.path));
            w.param("append", bool_str(file.append.unwrap_or(false)));
            time_chunks = true;
        }
        OutputKind::Null => buffered = false,
        OutputKind::Stdout => buffered = false,
        OutputKind::Forward(forward) => {
            // A receiver whose name does not resolve yet must not stop fluentd from starting:
            // the output retries (and buffers) like any other unreachable endpoint.
            w.param("ignore_network_errors_at_startup", "true");
            if forward.tls.is_some() {
                w.param("transport", "tls");
                w.param("tls_verify_hostname", "true");
            }
            write_tls(
                w,
                &secrets,
                forward.tls.as_ref(),
                &TlsKeys {
                    ca: "tls_ca_cert_path",
                    cert: "tls_client_cert_path",
                    key: "tls_client_private_key_path",
                    insecure: ("tls_insecure_mode", "true"),
                },
            );
            w.param(
                "require_ack_response",
                bool_str(forward.require_ack_response.unwrap_or(true)),
            );
            if let Some(key) = &forward.shared_key_secret_ref {
                w.open("security", None);
                w.param("self_hostname", "\"#{Socket.gethostname}\"");
                secrets.write_value(w, "shared_key", key);
                w.close("security");
            }
            for server in &forward.servers {
                w.open("server", None);
                w.param_str("host", &server.host);
                w.param("port", &server.port.unwrap_or(24224).to_string());
                w.close("server");
            }
        }
        OutputKind::Http(http) => {
            w.param_str("endpoint", &http.endpoint);
            w.param("json_array", "true");
            // Stated explicitly (fluentd warns that 503 leaves the default in v2): overload
            // and server errors are retried; other errors are final for the chunk.
            w.param("retryable_response_codes", "[429, 500, 502, 503, 504]");
            if !http.headers.is_empty() {
                w.param("headers", &fluentd_hash(&http.headers));
            }
            write_tls(
                w,
                &secrets,
                http.tls.as_ref(),
                &TlsKeys {
                    ca: "tls_ca_cert_path",
                    cert: "tls_client_cert_path",
                    key: "tls_private_key_path",
                    insecure: ("tls_verify_mode", "none"),
                },
            );
            if let Some(auth) = &http.basic_auth {
                w.open("auth", None);
                w.param("method", "basic");
                write_basic_auth(w, &secrets, Some(auth), "username", "password");
                w.close("auth");
            }
            w.open("format", None);
            w.param("@type", "json");
            w.close("format");
        }
        OutputKind::Elasticsearch(search) | OutputKind::Opensearch(search) => {
            w.param_str("hosts", &search.hosts.join(","));
            // Asking the server for its version happens inside `configure`, retried with
            // sleeps for as long as the server is down: fluentd neither starts nor stops
            // meanwhile. The version is pinned instead; requests are formatted for it.
            let (verify, version, default) = match kind {
                OutputKind::Opensearch(_) => (
                    "verify_os_version_at_startup",
                    "default_opensearch_version",
                    DEFAULT_OPENSEARCH_VERSION,
                ),
                _ => (
                    "verify_es_version_at_startup",
                    "default_elasticsearch_version",
                    DEFAULT_ELASTICSEARCH_VERSION,
                ),
            };
            w.param(verify, "false");
            w.param(
                version,
                &search
                    .server_major_version
                    .unwrap_or(default)
                    .clamp(1, 99)
                    .to_string(),
            );
            w.param_str(
                "index_name",
                search.index_name.as_deref().unwrap_or("fluentd"),
            );
            write_basic_auth(w, &secrets, search.basic_auth.as_ref(), "user", "password");
            w.param("ssl_verify", "true");
            write_tls(
                w,
                &secrets,
                search.tls.as_ref(),
                &TlsKeys {
                    ca: "ca_file",
                    cert: "client_cert",
                    key: "client_key",
                    insecure: ("ssl_verify", "false"),
                },
            );
        }
        OutputKind::Loki(loki) => {
            w.param_str("url", &loki.url);
            if let Some(tenant) = &loki.tenant {
                w.param_str("tenant", tenant);
            }
            write_basic_auth(
                w,
                &secrets,
                loki.basic_auth.as_ref(),
                "username",
                "password",
            );
            write_tls(
                w,
                &secrets,
                loki.tls.as_ref(),
                &TlsKeys {
                    ca: "ca_cert",
                    cert: "cert",
                    key: "key",
                    insecure: ("insecure_tls", "true"),
                },
            );
            w.param("extract_kubernetes_labels", "false");
            if !loki.labels.is_empty() {
                w.open("label", None);
                for (name, path) in &loki.labels {
                    if is_param_key(name) {
                        w.param_str(name, path);
                    } else {
                        w.comment(&format!(
                            "skipped Loki label {:?}: not a valid label name",
                            comment_text(name)
                        ));
                    }
                }
                w.close("label");
            }
        }
        OutputKind::S3(s3) => {
            w.param_str("s3_bucket", &s3.bucket);
            w.param_str("s3_region", &s3.region);
            w.param_str("path", s3.path.as_deref().unwrap_or("logs/"));
            // `${chunk_id}` keeps objects of parallel flushes (threads, workers, replicas)
            // from overwriting each other.
            w.param_str(
                "s3_object_key_format",
                "%{path}%{time_slice}_${chunk_id}.%{file_extension}",
            );
            // These call the S3 API when the output starts and raise when it fails, which
            // would stop the whole aggregator; an unreachable store only fails its flushes.
            w.param("check_apikey_on_start", "false");
            w.param("check_bucket", "false");
            w.param("auto_create_bucket", "false");
            if let Some(endpoint) = &s3.endpoint {
                w.param_str("s3_endpoint", endpoint);
                w.param("force_path_style", "true");
            }
            if let Some(id) = &s3.access_key_id_secret_ref {
                secrets.write_value(w, "aws_key_id", id);
            }
            if let Some(key) = &s3.secret_access_key_secret_ref {
                secrets.write_value(w, "aws_sec_key", key);
            }
            w.open("format", None);
            w.param("@type", "json");
            w.close("format");
            time_chunks = true;
        }
        OutputKind::Kafka(kafka) => {
            w.param_str("brokers", &kafka.brokers.join(","));
            w.param_str("default_topic", &kafka.topic);
            if let Some(sasl) = &kafka.sasl {
                w.param_str("username", &sasl.username);
                secrets.write_value(w, "password", &sasl.password_secret_ref);
                w.param(
                    "scram_mechanism",
                    match sasl.scram_mechanism {
                        crate::api::ScramMechanism::Sha256 => "sha256",
                        crate::api::ScramMechanism::Sha512 => "sha512",
                    },
                );
                w.param("sasl_over_ssl", bool_str(kafka.tls.is_some()));
            }
            if kafka
                .tls
                .as_ref()
                .is_some_and(|tls| tls.ca_secret_ref.is_none())
            {
                // ruby-kafka only turns TLS on when it has some CA to verify with.
                w.param("ssl_ca_certs_from_system", "true");
            }
            write_tls(
                w,
                &secrets,
                kafka.tls.as_ref(),
                &TlsKeys {
                    ca: "ssl_ca_cert",
                    cert: "ssl_client_cert",
                    key: "ssl_client_cert_key",
                    insecure: ("ssl_verify_hostname", "false"),
                },
            );
            w.open("format", None);
            w.param("@type", "json");
            w.close("format");
        }
        OutputKind::SplunkHec(hec) => {
            w.param("protocol", "https");
            w.param_str("hec_host", &hec.host);
            w.param("hec_port", &hec.port.unwrap_or(8088).to_string());
            secrets.write_value(w, "hec_token", &hec.token_secret_ref);
            if let Some(index) = &hec.index {
                w.param_str("index", index);
            }
            write_tls(
                w,
                &secrets,
                hec.tls.as_ref(),
                &TlsKeys {
                    ca: "ca_file",
                    cert: "client_cert",
                    key: "client_key",
                    insecure: ("insecure_ssl", "true"),
                },
            );
        }
    }
    if buffered {
        write_buffer(
            w,
            plan.spec.buffer.as_ref(),
            buffer_path,
            time_chunks,
            flush_at_shutdown,
        );
    }
}

/// Where a `file` output writes: below a directory of its own on the buffer volume
/// (`files/<namespace>/<name>`, ClusterOutputs under `files/_cluster/<name>`, a name no
/// namespace can have), so no two outputs, and no two tenants, share a file. The user's path
/// is relative to it whatever it says: no `..`, no absolute path.
fn file_output_path(key: &ObjectKey, path: &str) -> String {
    let relative: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .map(|part| if part == ".." { "_" } else { part })
        .collect();
    format!(
        "{}/files/{}/{}/{}",
        layout::AGGREGATOR_BUFFER_DIR,
        key.namespace.as_deref().unwrap_or("_cluster"),
        key.name,
        relative.join("/")
    )
}

/// Longest sleep of an idle output's flush and enqueue threads, in whole seconds: half the
/// flush interval, between 1 and 5.
fn idle_wakeup_seconds(flush_interval: &str) -> u64 {
    let digits = flush_interval.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match flush_interval.chars().last() {
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        _ => 1,
    };
    let seconds = digits.parse::<u64>().unwrap_or(10).saturating_mul(unit);
    (seconds / 2).clamp(1, 5)
}

/// The `<buffer>` section: always files on the buffer volume, at a path of its own.
pub fn write_buffer(
    w: &mut Writer,
    spec: Option<&BufferSpec>,
    path: &str,
    time_chunks: bool,
    flush_at_shutdown: bool,
) {
    let default = BufferSpec::default();
    let spec = spec.unwrap_or(&default);
    w.open("buffer", time_chunks.then_some("time"));
    w.param("@type", "file");
    w.param_str("path", path);
    if time_chunks {
        w.param("timekey", "1h");
        w.param("timekey_wait", "1m");
    }
    w.param(
        "chunk_limit_size",
        checked(spec.chunk_limit_size.as_deref(), &SIZE, "8m"),
    );
    // The model sizes every buffer from the volume (model::limits); the fallback only
    // serves plans built by hand.
    w.param(
        "total_limit_size",
        checked(spec.total_limit_size.as_deref(), &SIZE, "1g"),
    );
    // Explicit, or time-keyed buffers (`file`, `s3`) default to `lazy` and ignore the
    // interval, writing an hour late.
    w.param("flush_mode", "interval");
    let flush_interval = checked(spec.flush_interval.as_deref(), &DURATION, "10s");
    w.param("flush_interval", flush_interval);
    // How often an idle output's flush and enqueue threads wake up (fluentd: 1s). Every
    // buffered output has both, so at fluentd's default a thousand idle outputs keep a fifth
    // of a core busy; half the flush interval, at most 5s, costs a record at most that much
    // more delay before it is sent, and bursts (queued chunks) still flush at once.
    w.param(
        "flush_thread_interval",
        &idle_wakeup_seconds(flush_interval).to_string(),
    );
    w.param(
        "flush_thread_count",
        &spec
            .flush_thread_count
            .unwrap_or(limits::DEFAULT_FLUSH_THREADS)
            .clamp(1, 64)
            .to_string(),
    );
    w.param(
        "overflow_action",
        match spec
            .overflow_action
            .unwrap_or(OverflowAction::DropOldestChunk)
        {
            OverflowAction::ThrowException => "throw_exception",
            OverflowAction::Block => "block",
            OverflowAction::DropOldestChunk => "drop_oldest_chunk",
        },
    );
    // fluentd's default for file buffers is false: their chunks survive a restart. On an
    // emptyDir they do not survive the pod, so they are sent before it goes.
    if flush_at_shutdown {
        w.param("flush_at_shutdown", "true");
    }
    w.param("retry_type", "exponential_backoff");
    if spec.retry_forever == Some(true) {
        w.param("retry_forever", "true");
    } else {
        w.param(
            "retry_timeout",
            checked(spec.retry_timeout.as_deref(), &DURATION, "72h"),
        );
        if let Some(times) = spec.retry_max_times {
            w.param("retry_max_times", &times.max(0).to_string());
        }
    }
    w.param(
        "retry_wait",
        checked(spec.retry_wait.as_deref(), &DURATION, "1s"),
    );
    w.param(
        "retry_max_interval",
        checked(spec.retry_max_interval.as_deref(), &DURATION, "5m"),
    );
    w.close("buffer");
}
