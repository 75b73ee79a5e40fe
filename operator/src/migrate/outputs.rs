//! Outputs and ClusterOutputs: the kinds Sluice has, their credentials (Secret references in
//! the namespace Sluice reads them from; inline values moved into a generated Secret) and
//! their buffer.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use crate::api::{
    BasicAuth, BufferSpec, ClusterOutput, ClusterOutputSpec, FileOutput, ForwardOutput,
    ForwardServer, HttpOutput, KafkaOutput, KafkaSasl, LokiOutput, NullOutput, Output, OutputSpec,
    OutputTls, OverflowAction, S3Output, ScramMechanism, SearchOutput, SecretKeyRef,
    SplunkHecOutput,
};
use crate::model::limits::fluentd_size_bytes;

use super::fields::{At, Fields};
use super::report::Status;
use super::source::{Input, SourceKind};
use super::{Domain, SluiceObject};

/// An output and the Secret holding what its source wrote inline, if anything.
pub struct OutputConversion {
    pub object: SluiceObject,
    pub secrets: Vec<Secret>,
}

/// Annotation on generated Secrets naming the object whose inline values they hold.
pub const MIGRATED_FROM_ANNOTATION: &str = "logging.sluice.dev/migrated-from";

/// Where an output's credentials live, and what was written inline.
struct Credentials<'i> {
    input: &'i Input,
    /// Namespace logging-operator read the object's Secrets from.
    source_namespace: String,
    /// Namespace Sluice reads them from.
    namespace: String,
    /// The generated Secret for inline values.
    inline_secret: String,
    inline: BTreeMap<String, String>,
}

impl Credentials<'_> {
    /// The Secret key a secret field (`value`, `valueFrom` or `mountFrom`) names.
    fn key_ref(&self, fields: &mut Fields<'_>, at: &At<'_>) -> Option<(String, String)> {
        let Some(from) = at.field("valueFrom").or_else(|| at.field("mountFrom")) else {
            fields.error(at, "a secret field needs value, valueFrom or mountFrom");
            return None;
        };
        let Some(key_ref) = from.field("secretKeyRef") else {
            fields.error(&from, "needs secretKeyRef");
            return None;
        };
        let name = key_ref.field("name").and_then(|n| fields.string(&n));
        let key = key_ref.field("key").and_then(|k| fields.string(&k));
        match (name, key) {
            (Some(name), Some(key)) if !name.is_empty() && !key.is_empty() => Some((name, key)),
            _ => {
                fields.error(&key_ref, "needs name and key");
                None
            }
        }
    }

    /// A secret field as a Sluice Secret reference at `target`.
    fn reference(
        &mut self,
        fields: &mut Fields<'_>,
        at: &At<'_>,
        target: &str,
        inline_key: &str,
    ) -> Option<SecretKeyRef> {
        if let Some(value_at) = at.field("value") {
            let value = fields.string(&value_at)?;
            self.inline.insert(inline_key.to_owned(), value);
            fields.changed(
                at,
                Some(target.to_owned()),
                format!(
                    "written inline; Sluice takes credentials from Secrets only: moved into the generated Secret {}/{}, key {inline_key}",
                    self.namespace, self.inline_secret
                ),
            );
            return Some(SecretKeyRef {
                name: self.inline_secret.clone(),
                key: inline_key.to_owned(),
            });
        }
        let (name, key) = self.key_ref(fields, at)?;
        if self.source_namespace != self.namespace {
            fields.pending(
                at,
                Some(target.to_owned()),
                format!(
                    "logging-operator read Secret {}/{name}; Sluice reads a ClusterOutput's Secrets in the control namespace: copy it to {}/{name}",
                    self.source_namespace, self.namespace
                ),
            );
        } else {
            fields.converted(at, target);
        }
        Some(SecretKeyRef { name, key })
    }

    /// A secret field Sluice takes as a literal (user names).
    fn literal(&mut self, fields: &mut Fields<'_>, at: &At<'_>, target: &str) -> Option<String> {
        if let Some(value_at) = at.field("value") {
            let value = fields.string(&value_at);
            fields.converted(at, target);
            return value;
        }
        let (name, key) = self.key_ref(fields, at)?;
        let found = self
            .input
            .secrets
            .get(&(self.source_namespace.clone(), name.clone()))
            .and_then(|values| values.get(&key));
        match found {
            Some(value) => {
                fields.changed(
                    at,
                    Some(target.to_owned()),
                    format!(
                        "Sluice takes the user name as written: read from Secret {}/{name} (given in the input); a later change to that Secret no longer applies",
                        self.source_namespace
                    ),
                );
                Some(value.clone())
            }
            None => {
                fields.lost(
                    at,
                    format!(
                        "Sluice takes the user name as written, not from a Secret, and Secret {}/{name} is not in the input: set {target} by hand",
                        self.source_namespace
                    ),
                );
                None
            }
        }
    }

    fn generated(&self, source: &str) -> Option<Secret> {
        if self.inline.is_empty() {
            return None;
        }
        let mut secret = Secret {
            string_data: Some(self.inline.clone()),
            type_: Some("Opaque".to_owned()),
            ..Secret::default()
        };
        secret.metadata.name = Some(self.inline_secret.clone());
        secret.metadata.namespace = Some(self.namespace.clone());
        secret.metadata.annotations = Some(BTreeMap::from([(
            MIGRATED_FROM_ANNOTATION.to_owned(),
            source.to_owned(),
        )]));
        Some(secret)
    }
}

/// One output kind's conversion context.
struct Kind<'c, 'i> {
    creds: &'c mut Credentials<'i>,
    /// `spec.elasticsearch` and the like, in Sluice's spelling.
    target: String,
}

impl Kind<'_, '_> {
    fn to(&self, field: &str) -> String {
        format!("{}.{field}", self.target)
    }

    /// TLS from the kind's own field names.
    fn tls(
        &mut self,
        fields: &mut Fields<'_>,
        at: &At<'_>,
        ca: &str,
        cert: &str,
        key: &str,
    ) -> Option<OutputTls> {
        let mut tls = OutputTls::default();
        for (field, slot, to, inline) in [
            (ca, &mut tls.ca_secret_ref, "tls.caSecretRef", "ca.crt"),
            (
                cert,
                &mut tls.cert_secret_ref,
                "tls.certSecretRef",
                "tls.crt",
            ),
            (key, &mut tls.key_secret_ref, "tls.keySecretRef", "tls.key"),
        ] {
            if let Some(field_at) = at.field(field) {
                *slot = self
                    .creds
                    .reference(fields, &field_at, &self.to(to), inline);
            }
        }
        (tls != OutputTls::default()).then_some(tls)
    }

    /// Basic authentication from a user name (already read) and a password field. Sluice
    /// needs both: one without the other is reported lost, and no Secret is made for it.
    fn basic_auth(
        &mut self,
        fields: &mut Fields<'_>,
        user: Option<String>,
        password: Option<&At<'_>>,
        user_at: Option<&At<'_>>,
    ) -> Option<BasicAuth> {
        match (user, password) {
            (Some(username), Some(at)) => {
                let password_secret_ref = self.creds.reference(
                    fields,
                    at,
                    &self.to("basicAuth.passwordSecretRef"),
                    "password",
                )?;
                Some(BasicAuth {
                    username,
                    password_secret_ref,
                })
            }
            (None, None) => None,
            (Some(_), None) => {
                if let Some(at) = user_at {
                    fields.lost(at, "Sluice's basic authentication needs a password too");
                }
                None
            }
            (None, Some(at)) => {
                let why = if user_at.is_some() {
                    "Sluice's basic authentication needs the user name, which could not be converted"
                } else {
                    "Sluice's basic authentication needs a user name too"
                };
                fields.lost(at, why);
                None
            }
        }
    }
}

/// A field the output cannot do without: converted to `target`, or (absent) the whole output
/// is lost for `why`.
fn required(
    fields: &mut Fields<'_>,
    at: &At<'_>,
    key: &str,
    target: String,
    why: &str,
) -> Option<String> {
    if at.field(key).is_none() {
        fields.lost(at, why);
        return None;
    }
    fields.carry_string(at, key, target)
}

/// A kind's switch for certificate verification: `off` is the value that turns it off.
fn verification(
    fields: &mut Fields<'_>,
    at: &At<'_>,
    key: &str,
    off: &str,
    target: &str,
    tls: &mut Option<OutputTls>,
) {
    let Some(switch) = at.field(key) else {
        return;
    };
    if switch
        .node
        .scalar_text()
        .is_some_and(|value| value.eq_ignore_ascii_case(off))
    {
        insecure(fields, &switch, target, tls);
    } else {
        fields.not_needed(&switch, "Sluice always verifies");
    }
}

fn insecure(fields: &mut Fields<'_>, at: &At<'_>, target: &str, tls: &mut Option<OutputTls>) {
    fields.changed(
        at,
        Some(target.to_owned()),
        "the endpoint's certificate is not verified: Sluice carries that over but reports it on the object (TlsVerificationDisabled), and `sluice render` refuses it",
    );
    tls.get_or_insert_with(OutputTls::default)
        .insecure_skip_verify = Some(true);
}

/// Converts an Output or ClusterOutput named `name` in Sluice.
pub fn convert(
    fields: &mut Fields<'_>,
    domain: &Domain<'_>,
    input: &Input,
    name: &str,
    logging_ref: Option<String>,
) -> Option<OutputConversion> {
    let object = fields.object;
    let cluster = object.id.kind == SourceKind::ClusterOutput;
    let spec = At::spec(object);
    let source_namespace = object
        .id
        .namespace
        .clone()
        .or_else(|| domain.control_namespace.clone())
        .unwrap_or_default();
    let namespace = if cluster {
        domain
            .control_namespace
            .clone()
            .unwrap_or_else(|| source_namespace.clone())
    } else {
        source_namespace.clone()
    };
    let mut creds = Credentials {
        input,
        source_namespace,
        namespace: namespace.clone(),
        inline_secret: truncate(&format!(
            "migrated-{}-{name}",
            if cluster { "clusteroutput" } else { "output" }
        )),
        inline: BTreeMap::new(),
    };
    let mut protected = None;
    let mut kinds = Vec::new();
    for (key, at) in fields.entries_of(&spec) {
        match key.as_str() {
            "loggingRef" => match &logging_ref {
                Some(logging) => fields.converted(&at, format!("spec.loggingRef {logging}")),
                None => fields.not_needed(&at, "the only Logging: Sluice objects without loggingRef belong to the Logging that watches their namespace"),
            },
            "protected" if cluster => {
                protected = fields.bool(&at);
                fields.converted(&at, "spec.protected");
            }
            _ => kinds.push((key, at)),
        }
    }
    let Some((kind, kind_at)) = kinds.first().cloned() else {
        fields.about_object(Status::NotConverted, "spec", None, "no output kind is set");
        return None;
    };
    for (extra, at) in kinds.iter().skip(1) {
        fields.lost(
            at,
            format!("a second output kind ({extra}) in one object: Sluice takes the first, {kind}"),
        );
    }
    let mut output = OutputSpec {
        logging_ref,
        file: None,
        null_output: None,
        stdout: None,
        forward: None,
        http: None,
        elasticsearch: None,
        opensearch: None,
        loki: None,
        s3: None,
        kafka: None,
        splunk_hec: None,
        buffer: None,
    };
    let buffered = kind != "nullout";
    let target = match kind.as_str() {
        "splunkHec" => "spec.splunkHec".to_owned(),
        "nullout" => "spec.nullOutput".to_owned(),
        other => format!("spec.{other}"),
    };
    let mut k = Kind {
        creds: &mut creds,
        target,
    };
    let converted = match kind.as_str() {
        "elasticsearch" => search(fields, &mut k, &kind_at, false)
            .map(|o| output.elasticsearch = Some(Box::new(o))),
        "opensearch" => {
            search(fields, &mut k, &kind_at, true).map(|o| output.opensearch = Some(Box::new(o)))
        }
        "loki" => loki(fields, &mut k, &kind_at).map(|o| output.loki = Some(Box::new(o))),
        "s3" => s3(fields, &mut k, &kind_at).map(|o| output.s3 = Some(Box::new(o))),
        "kafka" => kafka(fields, &mut k, &kind_at).map(|o| output.kafka = Some(Box::new(o))),
        "splunkHec" => {
            splunk(fields, &mut k, &kind_at).map(|o| output.splunk_hec = Some(Box::new(o)))
        }
        "forward" => forward(fields, &mut k, &kind_at).map(|o| output.forward = Some(Box::new(o))),
        "http" => http(fields, &mut k, &kind_at).map(|o| output.http = Some(Box::new(o))),
        "file" => file(fields, &mut k, &kind_at).map(|o| output.file = Some(Box::new(o))),
        "nullout" => {
            if let Some(at) = kind_at.field("never_flush") {
                fields.not_needed(&at, "Sluice's null output has no buffer to flush");
            }
            fields.note(
                Status::Converted,
                &kind_at,
                Some("spec.nullOutput".to_owned()),
                "",
            );
            output.null_output = Some(Box::new(NullOutput {}));
            Some(())
        }
        other => {
            fields.lost(&kind_at, format!("Sluice has no {other} output"));
            None
        }
    };
    if converted.is_none() {
        fields.sweep(&spec);
        return None;
    }
    if buffered {
        output.buffer = Some(buffer(fields, &kind_at, cluster));
    }
    if let Some(at) = kind_at.field("slow_flush_log_threshold") {
        fields.not_needed(
            &at,
            "a warning threshold of fluentd's log; Sluice keeps fluentd's default",
        );
    }
    fields.sweep(&spec);
    let source = object.id.to_string();
    let secrets: Vec<Secret> = creds.generated(&source).into_iter().collect();
    let object = if cluster {
        SluiceObject::ClusterOutput(ClusterOutput::new(
            name,
            ClusterOutputSpec { protected, output },
        ))
    } else {
        let mut o = Output::new(name, output);
        o.metadata.namespace = Some(namespace);
        SluiceObject::Output(o)
    };
    Some(OutputConversion { object, secrets })
}

/// A Kubernetes object name of at most 253 characters.
fn truncate(name: &str) -> String {
    name.chars()
        .take(253)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_owned()
}

/// A fluentd size as Sluice writes it (`8m`); `8MB`, as fluentd also reads it, becomes `8m`.
fn size(text: &str) -> Option<String> {
    let trimmed = text.trim();
    let without_b = trimmed
        .strip_suffix(['b', 'B'])
        .filter(|rest| rest.ends_with(|c: char| "kmgtKMGT".contains(c)))
        .unwrap_or(trimmed);
    fluentd_size_bytes(without_b).map(|_| without_b.to_ascii_lowercase())
}

/// A fluentd time as Sluice writes it (`30s`).
fn duration(text: &str) -> Option<String> {
    let text = text.trim();
    let digits = text.trim_end_matches(['s', 'm', 'h', 'd']);
    let unit_len = text.len() - digits.len();
    (!digits.is_empty() && unit_len <= 1 && digits.chars().all(|c| c.is_ascii_digit()))
        .then(|| text.to_owned())
}

/// The kind's `buffer` as Sluice's `spec.buffer`.
fn buffer(fields: &mut Fields<'_>, kind_at: &At<'_>, cluster: bool) -> BufferSpec {
    let mut spec = BufferSpec::default();
    let mut retry_forever_written = false;
    if let Some(at) = kind_at.field("buffer") {
        for (key, field) in fields.entries_of(&at) {
            let to = |name: &str| format!("spec.buffer.{name}");
            match key.as_str() {
                "chunk_limit_size" | "total_limit_size" => {
                    let value = fields.string(&field).and_then(|t| size(&t));
                    let (slot, name) = if key == "chunk_limit_size" {
                        (&mut spec.chunk_limit_size, "chunkLimitSize")
                    } else {
                        (&mut spec.total_limit_size, "totalLimitSize")
                    };
                    match value {
                        Some(v) => {
                            *slot = Some(v);
                            if cluster {
                                fields.converted(&field, to(name));
                            } else {
                                fields.converted_note(&field, to(name), "the Logging's spec.tenantLimits may lower it (listed below when it would)");
                            }
                        }
                        None => fields.lost(&field, "not a fluentd size Sluice reads (digits and one of k, m, g, t)"),
                    }
                }
                "flush_interval" | "retry_timeout" | "retry_wait" | "retry_max_interval" => {
                    let name = match key.as_str() {
                        "flush_interval" => "flushInterval",
                        "retry_timeout" => "retryTimeout",
                        "retry_wait" => "retryWait",
                        _ => "retryMaxInterval",
                    };
                    match fields.string(&field).and_then(|t| duration(&t)) {
                        Some(v) => {
                            let slot = match key.as_str() {
                                "flush_interval" => &mut spec.flush_interval,
                                "retry_timeout" => &mut spec.retry_timeout,
                                "retry_wait" => &mut spec.retry_wait,
                                _ => &mut spec.retry_max_interval,
                            };
                            *slot = Some(v);
                            fields.converted(&field, to(name));
                        }
                        None => fields.lost(&field, "not a fluentd time Sluice reads (digits and one of s, m, h, d)"),
                    }
                }
                "flush_thread_count" => {
                    if let Some(n) = fields.int(&field) {
                        let n = i32::try_from(n.clamp(1, 64)).unwrap_or(1);
                        spec.flush_thread_count = Some(n);
                        if cluster {
                            fields.converted(&field, to("flushThreadCount"));
                        } else {
                            fields.converted_note(&field, to("flushThreadCount"), "the Logging's spec.tenantLimits.maxFlushThreadCount (default 4) caps it");
                        }
                    }
                }
                "retry_max_times" => {
                    if let Some(n) = fields.int(&field) {
                        spec.retry_max_times = i32::try_from(n.max(0)).ok();
                        fields.converted(&field, to("retryMaxTimes"));
                    }
                }
                "retry_forever" => {
                    spec.retry_forever = fields.bool(&field);
                    retry_forever_written = true;
                    fields.converted(&field, to("retryForever"));
                }
                "overflow_action" => match fields.string(&field).as_deref() {
                    Some("throw_exception") => {
                        spec.overflow_action = Some(OverflowAction::ThrowException);
                        fields.converted(&field, to("overflowAction"));
                    }
                    Some("drop_oldest_chunk") => {
                        spec.overflow_action = Some(OverflowAction::DropOldestChunk);
                        fields.converted(&field, to("overflowAction"));
                    }
                    Some("block") if cluster => {
                        spec.overflow_action = Some(OverflowAction::Block);
                        fields.converted(&field, to("overflowAction"));
                    }
                    Some("block") => fields.changed(&field, None, "a tenant Output may not block the shared aggregator unless the Logging allows it (spec.tenantLimits.allowedOverflowActions), else Sluice leaves the Output out: left at Sluice's default, drop_oldest_chunk (a full buffer drops its oldest records)"),
                    _ => fields.lost(&field, "not an overflow action Sluice has (throw_exception, block, drop_oldest_chunk)"),
                },
                "type" => match fields.string(&field).as_deref() {
                    Some("file") => fields.not_needed(&field, "Sluice buffers in files on the aggregator's buffer volume always"),
                    _ => fields.changed(&field, None, "Sluice buffers in files on the aggregator's buffer volume always, so buffered records survive a restart"),
                },
                "disabled" => {
                    if fields.bool(&field) == Some(true) {
                        fields.changed(&field, None, "Sluice always buffers every output");
                    } else {
                        fields.not_needed(&field, "Sluice always buffers every output");
                    }
                }
                "path" => fields.not_needed(&field, "Sluice gives every flow-output pair a buffer directory of its own"),
                "tags" | "timekey" | "timekey_wait" | "timekey_use_utc" | "timekey_zone" | "flush_mode" => fields.not_needed(&field, "Sluice sets the chunk keys and flush mode itself: chunks per flow-output pair, flushed every flushInterval"),
                "flush_at_shutdown" => fields.not_needed(&field, "Sluice flushes at shutdown exactly when the buffer volume does not outlive the pod"),
                _ => {}
            }
        }
    }
    if !retry_forever_written {
        spec.retry_forever = Some(true);
        fields.note(Status::Converted, kind_at, Some("spec.buffer.retryForever true".to_owned()), "logging-operator retries a chunk forever unless told otherwise; written out, as Sluice's default gives up after retryTimeout (72h)");
    }
    spec
}

fn search(
    fields: &mut Fields<'_>,
    k: &mut Kind<'_, '_>,
    at: &At<'_>,
    opensearch: bool,
) -> Option<SearchOutput> {
    let scheme = fields.carry_string(at, "scheme", k.to("hosts"));
    let scheme = scheme.unwrap_or_else(|| "http".to_owned());
    let path = at
        .field("path")
        .and_then(|p| {
            let path = fields.string(&p);
            fields.converted_note(&p, k.to("hosts"), "the path is part of each host's URL");
            path
        })
        .unwrap_or_default();
    let mut hosts = Vec::new();
    if let Some(hosts_at) = at.field("hosts") {
        let text = fields.string(&hosts_at).unwrap_or_default();
        for host in text.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            hosts.push(if host.contains("://") {
                host.to_owned()
            } else {
                format!("{scheme}://{host}{path}")
            });
        }
        fields.converted(&hosts_at, k.to("hosts"));
        for ignored in ["host", "port"] {
            if let Some(i) = at.field(ignored) {
                fields.not_needed(&i, "the plugin ignores it when hosts is set");
            }
        }
    } else {
        let host = fields.carry_string(at, "host", k.to("hosts"));
        let port = fields.carry_int(at, "port", k.to("hosts"));
        hosts.push(format!(
            "{scheme}://{}:{}{path}",
            host.unwrap_or_else(|| "localhost".to_owned()),
            port.unwrap_or(9200)
        ));
    }
    let user_at = at.field("user");
    let user = user_at.as_ref().and_then(|u| {
        let user = fields.string(u);
        fields.converted(u, k.to("basicAuth.username"));
        user
    });
    let password_at = at.field("password");
    let basic_auth = k.basic_auth(fields, user, password_at.as_ref(), user_at.as_ref());
    let index_name = at.field("index_name").and_then(|i| {
        let name = fields.string(&i)?;
        let valid = name.len() <= 255
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if valid {
            fields.converted(&i, k.to("indexName"));
            Some(name)
        } else {
            fields.lost(&i, "Sluice writes to one fixed index (lowercase letters, digits, '.', '_', '-'): placeholders are not expanded; the default `fluentd` is used");
            None
        }
    });
    if let Some(l) = at.field("logstash_format") {
        if fields.bool(&l) == Some(true) {
            fields.lost(
                &l,
                "Sluice writes to indexName only: no logstash-style daily indices",
            );
        } else {
            fields.not_needed(&l, "off, as in Sluice");
        }
    }
    let mut tls = k.tls(fields, at, "ca_file", "client_cert", "client_key");
    verification(
        fields,
        at,
        "ssl_verify",
        "false",
        &k.to("tls.insecureSkipVerify"),
        &mut tls,
    );
    if let Some(p) = at.field("client_key_pass") {
        fields.lost(&p, "Sluice loads unencrypted client keys only");
    }
    let (version_key, verify_key, default) = if opensearch {
        (
            "default_opensearch_version",
            "verify_os_version_at_startup",
            2,
        )
    } else {
        (
            "default_elasticsearch_version",
            "verify_es_version_at_startup",
            8,
        )
    };
    let version = at.field(version_key).and_then(|v| {
        let version = fields
            .int(&v)
            .and_then(|n| i32::try_from(n).ok())
            .filter(|n| (1..=99).contains(n));
        fields.converted(&v, k.to("serverMajorVersion"));
        version
    });
    let verify = at.field(verify_key).map(|v| {
        let verify = fields.bool(&v);
        fields.not_needed(&v, "Sluice never asks the server at startup (a server that is down would stall the whole aggregator); it formats requests for serverMajorVersion");
        verify
    });
    if version.is_none() && verify != Some(Some(false)) {
        fields.note(Status::Changed, at, Some(k.to(&format!("serverMajorVersion {default}"))), format!("logging-operator asked the server for its version at startup; Sluice formats requests for version {default} unless serverMajorVersion is set"));
    }
    Some(SearchOutput {
        hosts,
        index_name,
        basic_auth,
        tls,
        server_major_version: version,
    })
}

fn loki(fields: &mut Fields<'_>, k: &mut Kind<'_, '_>, at: &At<'_>) -> Option<LokiOutput> {
    let url = match at.field("url") {
        Some(u) => {
            let url = fields.string(&u);
            fields.converted(&u, k.to("url"));
            url?
        }
        None => {
            fields.note(Status::Converted, at, Some(k.to("url")), "no url: logging-operator's default, https://logs-us-west1.grafana.net, written out");
            "https://logs-us-west1.grafana.net".to_owned()
        }
    };
    let user_at = at.field("username");
    let user = user_at
        .as_ref()
        .and_then(|u| k.creds.literal(fields, u, &k.to("basicAuth.username")));
    let password_at = at.field("password");
    let basic_auth = k.basic_auth(fields, user, password_at.as_ref(), user_at.as_ref());
    let mut tls = k.tls(fields, at, "ca_cert", "cert", "key");
    verification(
        fields,
        at,
        "insecure_tls",
        "true",
        &k.to("tls.insecureSkipVerify"),
        &mut tls,
    );
    let tenant = fields.carry_string(at, "tenant", k.to("tenant"));
    let mut labels = at
        .field("labels")
        .map(|l| {
            let labels = fields.string_map(&l);
            fields.converted(&l, k.to("labels"));
            labels
        })
        .unwrap_or_default();
    if let Some(c) = at.field("configure_kubernetes_labels") {
        if fields.bool(&c) == Some(true) {
            for (name, path) in [
                ("namespace", "$.kubernetes.namespace_name"),
                ("pod", "$.kubernetes.pod_name"),
                ("container_id", "$.kubernetes.docker_id"),
                ("container", "$.kubernetes.container_name"),
                ("pod_id", "$.kubernetes.pod_id"),
                ("host", "$.kubernetes.host"),
            ] {
                labels
                    .entry(name.to_owned())
                    .or_insert_with(|| path.to_owned());
            }
            fields.changed(&c, Some(k.to("labels")), "the six Kubernetes labels it adds are written out as labels; the records keep their `kubernetes` key, which logging-operator removed");
        } else {
            fields.not_needed(&c, "off, as in Sluice");
        }
    }
    if let Some(e) = at.field("extract_kubernetes_labels") {
        if fields.bool(&e) == Some(true) {
            fields.lost(&e, "Sluice does not turn every pod label into a Loki label; name the ones you need in labels");
        } else {
            fields.not_needed(&e, "off, as in Sluice");
        }
    }
    if let Some(e) = at.field("extra_labels") {
        fields.lost(
            &e,
            "Sluice's Loki labels name record keys; fixed label values are not offered",
        );
    }
    match at.field("line_format") {
        Some(f) if fields.string(&f).as_deref() == Some("key_value") => fields.converted(&f, k.to("(line format key_value)")),
        Some(f) => fields.changed(&f, None, "Sluice leaves the plugin's default line format, key_value; logging-operator sent JSON lines"),
        None => fields.note(Status::Changed, at, None, "logging-operator sends JSON lines (its default line_format json); Sluice leaves the plugin's default, key_value"),
    }
    Some(LokiOutput {
        url,
        labels,
        tenant,
        basic_auth,
        tls,
    })
}

fn s3(fields: &mut Fields<'_>, k: &mut Kind<'_, '_>, at: &At<'_>) -> Option<S3Output> {
    let Some(bucket_at) = at.field("s3_bucket") else {
        fields.lost(at, "no s3_bucket");
        return None;
    };
    let bucket = fields.string(&bucket_at)?;
    let valid = (3..=63).contains(&bucket.len())
        && bucket.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    if !valid {
        fields.lost(&bucket_at, "not a bucket name Sluice accepts (lowercase letters, digits, '.', '-'; placeholders are not expanded)");
        return None;
    }
    fields.converted(&bucket_at, k.to("bucket"));
    let region = match at.field("s3_region") {
        Some(r) => {
            let region = fields.string(&r)?;
            fields.converted(&r, k.to("region"));
            region
        }
        None => {
            fields.note(
                Status::Converted,
                at,
                Some(k.to("region us-east-1")),
                "no s3_region: the plugin's default, us-east-1, written out",
            );
            "us-east-1".to_owned()
        }
    };
    let path = match at.field("path") {
        Some(p) => {
            let path = fields.string(&p);
            fields.converted(&p, k.to("path"));
            path
        }
        None => Some(String::new()),
    };
    let endpoint = fields.carry_string(at, "s3_endpoint", k.to("endpoint"));
    if let Some(f) = at.field("force_path_style") {
        fields.not_needed(
            &f,
            "Sluice uses path-style addressing with an endpoint, virtual-host style with AWS",
        );
    }
    let access_key_id_secret_ref = at.field("aws_key_id").and_then(|a| {
        k.creds
            .reference(fields, &a, &k.to("accessKeyIdSecretRef"), "aws_key_id")
    });
    let secret_access_key_secret_ref = at.field("aws_sec_key").and_then(|a| {
        k.creds
            .reference(fields, &a, &k.to("secretAccessKeySecretRef"), "aws_sec_key")
    });
    if access_key_id_secret_ref.is_none() {
        fields.note(Status::Changed, at, None, "no keys: the aggregator's own cloud identity writes, which a namespaced Output may use only when the Logging allows it (spec.tenantLimits.allowAmbientCredentials)");
    }
    if let Some(c) = at.field("instance_profile_credentials") {
        fields.not_needed(
            &c,
            "without keys the plugin uses the instance profile (or IRSA) as before",
        );
    }
    match at.field("store_as") {
        Some(s) if fields.string(&s).as_deref() == Some("gzip") => {
            fields.not_needed(&s, "gzip, as in Sluice")
        }
        Some(s) => fields.lost(&s, "Sluice stores gzip objects"),
        None => {}
    }
    match at.field("format") {
        Some(f) if f.field("type").and_then(|t| t.node.as_str().map(str::to_owned)).as_deref() == Some("json") => {
            fields.not_needed(&f, "JSON lines, as Sluice writes");
        }
        Some(f) => fields.lost(&f, "Sluice writes one JSON record per line"),
        None => fields.note(Status::Changed, at, None, "objects hold one JSON record per line; logging-operator's default was the out_file format (time, tag, JSON)"),
    }
    if let Some(f) = at.field("s3_object_key_format") {
        fields.changed(&f, None, "Sluice names objects <path><time>_<chunk id>.gz so parallel flushes never overwrite each other");
    }
    for startup in ["check_apikey_on_start", "check_bucket"] {
        if let Some(c) = at.field(startup) {
            fields.not_needed(
                &c,
                "Sluice never calls S3 at startup (a failure would stop the whole aggregator)",
            );
        }
    }
    if let Some(c) = at.field("auto_create_bucket") {
        fields.changed(
            &c,
            None,
            "Sluice never creates the bucket: create it before switching",
        );
    }
    Some(S3Output {
        bucket,
        region,
        path,
        endpoint,
        access_key_id_secret_ref,
        secret_access_key_secret_ref,
    })
}

fn kafka(fields: &mut Fields<'_>, k: &mut Kind<'_, '_>, at: &At<'_>) -> Option<KafkaOutput> {
    let brokers_at = at.field("brokers");
    let Some(brokers_at) = brokers_at else {
        fields.lost(at, "no brokers");
        return None;
    };
    let brokers: Vec<String> = fields
        .string(&brokers_at)?
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
        .collect();
    fields.converted(&brokers_at, k.to("brokers"));
    let topic = required(
        fields,
        at,
        "default_topic",
        k.to("topic"),
        "no default_topic: Sluice produces to one topic",
    )?;
    let user_at = at.field("username");
    let password_at = at.field("password");
    let scram_at = at.field("scram_mechanism");
    let sasl = match (&user_at, &password_at, &scram_at) {
        (Some(u), Some(p), Some(s)) => {
            let mechanism = match fields.string(s).as_deref() {
                Some("sha256") => Some(ScramMechanism::Sha256),
                Some("sha512") => Some(ScramMechanism::Sha512),
                _ => None,
            };
            match mechanism {
                Some(scram_mechanism) => {
                    fields.converted(s, k.to("sasl.scramMechanism"));
                    let username = k.creds.literal(fields, u, &k.to("sasl.username"));
                    let password =
                        k.creds
                            .reference(fields, p, &k.to("sasl.passwordSecretRef"), "password");
                    match (username, password) {
                        (Some(username), Some(password_secret_ref)) => Some(KafkaSasl {
                            scram_mechanism,
                            username,
                            password_secret_ref,
                        }),
                        _ => None,
                    }
                }
                None => {
                    fields.lost(s, "Sluice's Kafka SASL is SCRAM with sha256 or sha512");
                    None
                }
            }
        }
        (None, None, None) => None,
        _ => {
            for a in [&user_at, &password_at].into_iter().flatten() {
                fields.lost(a, "Sluice's Kafka authentication is SASL/SCRAM: user name, password and scram_mechanism together");
            }
            None
        }
    };
    let mut tls = k.tls(
        fields,
        at,
        "ssl_ca_cert",
        "ssl_client_cert",
        "ssl_client_cert_key",
    );
    if let Some(s) = at.field("ssl_ca_certs_from_system") {
        if fields.bool(&s) == Some(true) {
            tls.get_or_insert_with(OutputTls::default);
            fields.converted(&s, k.to("tls"));
        } else {
            fields.not_needed(&s, "off");
        }
    }
    verification(
        fields,
        at,
        "ssl_verify_hostname",
        "false",
        &k.to("tls.insecureSkipVerify"),
        &mut tls,
    );
    if let Some(s) = at.field("sasl_over_ssl") {
        fields.not_needed(&s, "Sluice sends SASL over TLS whenever tls is set");
    }
    match at.field("format") {
        Some(f)
            if f.field("type")
                .and_then(|t| t.node.as_str().map(str::to_owned))
                .as_deref()
                == Some("json") =>
        {
            fields.not_needed(&f, "JSON, as Sluice produces");
        }
        Some(f) => fields.lost(&f, "Sluice produces JSON messages"),
        None => {}
    }
    Some(KafkaOutput {
        brokers,
        topic,
        sasl,
        tls,
    })
}

fn splunk(fields: &mut Fields<'_>, k: &mut Kind<'_, '_>, at: &At<'_>) -> Option<SplunkHecOutput> {
    let host = required(fields, at, "hec_host", k.to("host"), "no hec_host")?;
    let port = at.field("hec_port").and_then(|p| {
        let port = fields.int(&p).and_then(|n| i32::try_from(n).ok());
        fields.converted(&p, k.to("port"));
        port
    });
    let Some(token_at) = at.field("hec_token") else {
        fields.lost(at, "no hec_token");
        return None;
    };
    let token_secret_ref =
        k.creds
            .reference(fields, &token_at, &k.to("tokenSecretRef"), "hec_token")?;
    let index = fields.carry_string(at, "index", k.to("index"));
    match at.field("protocol") {
        Some(p) if fields.string(&p).as_deref() == Some("http") => fields.changed(
            &p,
            None,
            "Sluice always uses HTTPS: the collector must serve it",
        ),
        Some(p) => fields.not_needed(&p, "HTTPS, as in Sluice"),
        None => {}
    }
    let mut tls = k.tls(fields, at, "ca_file", "client_cert", "client_key");
    verification(
        fields,
        at,
        "insecure_ssl",
        "true",
        &k.to("tls.insecureSkipVerify"),
        &mut tls,
    );
    Some(SplunkHecOutput {
        host,
        port,
        token_secret_ref,
        index,
        tls,
    })
}

fn forward(fields: &mut Fields<'_>, k: &mut Kind<'_, '_>, at: &At<'_>) -> Option<ForwardOutput> {
    let Some(servers_at) = at.field("servers") else {
        fields.lost(at, "no servers");
        return None;
    };
    let mut servers = Vec::new();
    let mut shared_key: Option<SecretKeyRef> = None;
    for (index, server) in fields.items(&servers_at).into_iter().enumerate() {
        let to = |field: &str| format!("{}.servers[{index}].{field}", k.target);
        let Some(host_at) = server.field("host") else {
            fields.error(&server, "a forward server needs host");
            continue;
        };
        let host = fields.string(&host_at).unwrap_or_default();
        fields.converted(&host_at, to("host"));
        let port = server.field("port").and_then(|p| {
            let port = fields.int(&p).and_then(|n| i32::try_from(n).ok());
            fields.converted(&p, to("port"));
            port
        });
        if let Some(key_at) = server.field("shared_key") {
            let reference =
                k.creds
                    .reference(fields, &key_at, &k.to("sharedKeySecretRef"), "shared_key");
            match (&shared_key, reference) {
                (Some(first), Some(this)) if *first != this => fields.lost(
                    &key_at,
                    "Sluice takes one shared key for all servers; the first server's is used",
                ),
                (None, Some(this)) => shared_key = Some(this),
                _ => {}
            }
        }
        if let Some(n) = server.field("name") {
            fields.not_needed(&n, "a label in fluentd's log only");
        }
        servers.push(ForwardServer { host, port });
    }
    if let Some(security) = at.field("security") {
        if let Some(key_at) = security.field("shared_key")
            && let Some(key) = fields.string(&key_at)
        {
            k.creds.inline.insert("shared_key".to_owned(), key);
            shared_key = Some(SecretKeyRef {
                name: k.creds.inline_secret.clone(),
                key: "shared_key".to_owned(),
            });
            fields.changed(
                &key_at,
                Some(k.to("sharedKeySecretRef")),
                format!(
                    "written inline; moved into the generated Secret {}/{}, key shared_key",
                    k.creds.namespace, k.creds.inline_secret
                ),
            );
        }
        if let Some(h) = security.field("self_hostname") {
            fields.not_needed(&h, "Sluice sends the aggregator pod's host name");
        }
    }
    let transport_tls = at.field("transport").map(|t| {
        let tls = fields.string(&t).as_deref() == Some("tls");
        if tls {
            fields.converted(&t, k.to("tls"));
        } else {
            fields.not_needed(&t, "plain TCP, as Sluice's forward without tls");
        }
        tls
    }) == Some(true);
    let mut tls = None;
    let tls_fields = [
        "tls_cert_path",
        "tls_client_cert_path",
        "tls_client_private_key_path",
        "tls_insecure_mode",
        "tls_verify_hostname",
        "tls_allow_self_signed_cert",
        "tls_version",
        "tls_ciphers",
    ];
    if transport_tls {
        tls = Some(
            k.tls(
                fields,
                at,
                "tls_cert_path",
                "tls_client_cert_path",
                "tls_client_private_key_path",
            )
            .unwrap_or_default(),
        );
        verification(
            fields,
            at,
            "tls_insecure_mode",
            "true",
            &k.to("tls.insecureSkipVerify"),
            &mut tls,
        );
        if let Some(v) = at.field("tls_verify_hostname") {
            if fields.bool(&v) == Some(false) {
                fields.changed(
                    &v,
                    None,
                    "Sluice always checks the receiver's host name against its certificate",
                );
            } else {
                fields.not_needed(&v, "Sluice always checks the host name");
            }
        }
    } else {
        for key in tls_fields {
            if let Some(f) = at.field(key) {
                fields.not_needed(&f, "without transport tls the plugin ignores it");
            }
        }
    }
    let require_ack_response = match fields.carry_bool(
        at,
        "require_ack_response",
        k.to("requireAckResponse"),
    ) {
        Some(value) => Some(value),
        None if at.field("require_ack_response").is_some() => None,
        None => {
            fields.note(Status::Converted, at, Some(k.to("requireAckResponse false")), "logging-operator's default (no acknowledgements) written out; Sluice's own default waits for them");
            Some(false)
        }
    };
    Some(ForwardOutput {
        servers,
        tls,
        shared_key_secret_ref: shared_key,
        require_ack_response,
    })
}

fn http(fields: &mut Fields<'_>, k: &mut Kind<'_, '_>, at: &At<'_>) -> Option<HttpOutput> {
    let endpoint = required(fields, at, "endpoint", k.to("endpoint"), "no endpoint")?;
    let headers = at
        .field("headers")
        .map(|h| {
            let headers = fields.string_map(&h);
            fields.converted(&h, k.to("headers"));
            headers
        })
        .unwrap_or_default();
    let basic_auth = at.field("auth").and_then(|auth| {
        let user_at = auth.field("username");
        let user = user_at
            .as_ref()
            .and_then(|u| k.creds.literal(fields, u, &k.to("basicAuth.username")));
        let password_at = auth.field("password");
        k.basic_auth(fields, user, password_at.as_ref(), user_at.as_ref())
    });
    let mut tls = k.tls(
        fields,
        at,
        "tls_ca_cert_path",
        "tls_client_cert_path",
        "tls_private_key_path",
    );
    verification(
        fields,
        at,
        "tls_verify_mode",
        "none",
        &k.to("tls.insecureSkipVerify"),
        &mut tls,
    );
    match at.field("http_method") {
        Some(m) if fields.string(&m).as_deref() == Some("put") => {
            fields.lost(&m, "Sluice sends POST requests")
        }
        Some(m) => fields.not_needed(&m, "POST, as Sluice sends"),
        None => {}
    }
    match at.field("json_array") {
        Some(j) if fields.bool(&j) == Some(true) => fields.not_needed(&j, "Sluice sends JSON arrays"),
        Some(j) => fields.changed(&j, None, "Sluice sends each chunk as one JSON array; logging-operator sent one JSON object per line"),
        None => fields.note(Status::Changed, at, None, "Sluice sends each chunk as one JSON array; logging-operator's default sent one JSON object per line"),
    }
    match at.field("format") {
        Some(f)
            if f.field("type")
                .and_then(|t| t.node.as_str().map(str::to_owned))
                .as_deref()
                == Some("json") =>
        {
            fields.not_needed(&f, "JSON, as Sluice sends");
        }
        Some(f) => fields.lost(&f, "Sluice sends JSON"),
        None => {}
    }
    if let Some(c) = at.field("content_type") {
        fields.not_needed(&c, "Sluice sends application/json");
    }
    Some(HttpOutput {
        endpoint,
        headers,
        basic_auth,
        tls,
    })
}

fn file(fields: &mut Fields<'_>, k: &mut Kind<'_, '_>, at: &At<'_>) -> Option<FileOutput> {
    let Some(path_at) = at.field("path") else {
        fields.lost(at, "no path");
        return None;
    };
    let path = fields.string(&path_at)?;
    if path.contains("${") {
        fields.lost(&path_at, "Sluice's file paths take no ${…} placeholders (one tenant could write into another's files)");
        return None;
    }
    let relative = path.trim_start_matches('/').to_owned();
    fields.changed(&path_at, Some(k.to("path")), format!("written below the output's own directory on the aggregator's buffer volume (/buffers/files/<namespace>/<name>/{relative}), not at {path}"));
    let append = fields.carry_bool(at, "append", k.to("append"));
    if let Some(s) = at.field("add_path_suffix") {
        if fields.bool(&s) == Some(false) {
            fields.lost(&s, "Sluice's files always end in .log");
        } else {
            fields.not_needed(&s, "on, as in Sluice");
        }
    }
    if let Some(s) = at.field("path_suffix") {
        if fields.string(&s).as_deref() == Some(".log") {
            fields.not_needed(&s, ".log, as in Sluice");
        } else {
            fields.lost(&s, "Sluice's files always end in .log");
        }
    }
    Some(FileOutput {
        path: relative,
        append,
    })
}
