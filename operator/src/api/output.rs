use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ObjectStatus, SecretKeyRef};

/// Makes the output kinds a one-of with a structural `oneOf` of `required` branches, built
/// from [`OutputSpec::KINDS`]. Not a CEL rule: API servers before 1.29 fail every rule that
/// calls `has()` on an object declared without properties (`nullOutput: {}`, `stdout: {}`)
/// with "invalid object type", and a `oneOf` of `required` is allowed in structural schemas
/// and costs nothing of the CEL budget.
fn one_output_kind(schema: &mut schemars::Schema) {
    let branches: Vec<serde_json::Value> = OutputSpec::KINDS
        .iter()
        .map(|kind| serde_json::json!({ "required": [kind] }))
        .collect();
    schema.insert("oneOf".to_owned(), branches.into());
}

/// A destination for the records of Flows in the same namespace. It can only ever degrade
/// itself: what fluentd would refuse (patterns, record accessors, path placeholders) and
/// Secrets it cannot use (missing, unreadable, another namespace's, Sluice's own) leave it out
/// with a Degraded condition. Creating one lets you send this namespace's Secrets to an
/// endpoint you choose: grant it only to those who may read them.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "logging.sluice.dev",
    version = "v1alpha1",
    kind = "Output",
    namespaced,
    status = "ObjectStatus",
    shortname = "sout",
    category = "sluice",
    derive = "PartialEq",
    doc = "A destination for records of Flows in the same namespace. Exactly one output kind is set.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Degraded",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Degraded\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[schemars(transform = one_output_kind)]
#[serde(rename_all = "camelCase")]
pub struct OutputSpec {
    // The output kinds are boxed: inline, every Output would carry the size of all eleven
    // (2.3 KB), in the watch cache and in every map of plans.
    /// Name of the Logging this output belongs to. Unset: every Logging that watches this namespace.
    /// A Logging's name (DNS subdomain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub logging_ref: Option<String>,
    /// Writes records to files on the aggregator's buffer volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Box<FileOutput>>,
    /// Discards records. (`null` itself would be read as a YAML null.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_output: Option<Box<NullOutput>>,
    /// Prints records to the aggregator's standard output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<Box<StdoutOutput>>,
    /// Forwards records to another fluentd or fluent-bit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<Box<ForwardOutput>>,
    /// Sends records as JSON to an HTTP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Box<HttpOutput>>,
    /// Indexes records in Elasticsearch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elasticsearch: Option<Box<SearchOutput>>,
    /// Indexes records in OpenSearch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opensearch: Option<Box<SearchOutput>>,
    /// Pushes records to Grafana Loki.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loki: Option<Box<LokiOutput>>,
    /// Writes records as objects to Amazon S3 or a compatible store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<Box<S3Output>>,
    /// Produces records to Apache Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<Box<KafkaOutput>>,
    /// Sends records to a Splunk HTTP Event Collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splunk_hec: Option<Box<SplunkHecOutput>>,
    /// Buffering and retries of this output. Each instance of it (one per namespace whose
    /// Flows send to it, one for the admin flows) has its own buffer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<BufferSpec>,
}

/// A destination for records of ClusterFlows, the default flow, and (unless `protected`) Flows.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "logging.sluice.dev",
    version = "v1alpha1",
    kind = "ClusterOutput",
    status = "ObjectStatus",
    shortname = "scout",
    category = "sluice",
    derive = "PartialEq",
    doc = "A destination for records of ClusterFlows, the default flow and, unless protected, Flows. Exactly one output kind is set. Secrets it references live in the Logging's controlNamespace.",
    printcolumn(name = "Protected", type_ = "boolean", json_path = ".spec.protected"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Degraded",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Degraded\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterOutputSpec {
    /// Only ClusterFlows and the default flow may use a protected output; Flows may not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
    /// The destination. Same fields as an Output.
    #[serde(flatten)]
    pub output: OutputSpec,
}

/// Writes records to files.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileOutput {
    /// Path prefix of the files, relative to the output's own directory on the buffer volume
    /// (`/buffers/files/<namespace>/<name>/`). fluentd appends the hour; `%Y`, `%m`, `%d`, `%H`
    /// (all four or none), `%M`, `%S` and `*` place it; `${tag}` and other `${…}` are refused.
    #[schemars(length(min = 1, max = 512))]
    pub path: String,
    /// Append to one file per chunk key instead of one file per chunk. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<bool>,
}

/// Discards records.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct NullOutput {}

/// Prints records.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct StdoutOutput {}

/// Forwards to fluentd or fluent-bit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardOutput {
    /// Receivers; records are balanced across them.
    #[schemars(length(min = 1, max = 32))]
    pub servers: Vec<ForwardServer>,
    /// TLS towards the receivers. Unset: plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OutputTls>,
    /// Shared key the receivers expect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_key_secret_ref: Option<SecretKeyRef>,
    /// Wait for the receiver's acknowledgement of each chunk. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_ack_response: Option<bool>,
}

/// One forward receiver.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ForwardServer {
    /// DNS name or address.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// Port. Default: 24224.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// TLS towards an output's endpoint. Verification is always on unless explicitly disabled.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputTls {
    /// CA bundle (PEM) to verify the endpoint with. Unset: the image's system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Client certificate (PEM), for endpoints that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<SecretKeyRef>,
    /// Client private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret_ref: Option<SecretKeyRef>,
    /// Skip verifying the endpoint's certificate. Reported as a warning on the object
    /// (`Warning` condition, not `Degraded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// Basic authentication.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// User name.
    #[schemars(length(min = 1, max = 256))]
    pub username: String,
    /// Password.
    pub password_secret_ref: SecretKeyRef,
}

/// Sends records to an HTTP endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpOutput {
    /// URL, `http://` or `https://`.
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub endpoint: String,
    /// Extra request headers with literal values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = crate::api::bounded_map::<32, 4096>)]
    pub headers: BTreeMap<String, String>,
    /// Basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// TLS towards the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OutputTls>,
}

/// Elasticsearch or OpenSearch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchOutput {
    /// Cluster URLs such as `https://es.example:9200`.
    #[schemars(length(min = 1, max = 32), inner(length(min = 1, max = 2048)))]
    pub hosts: Vec<String>,
    /// Index name. Default: `fluentd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,254}$"))]
    pub index_name: Option<String>,
    /// Basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// TLS towards the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OutputTls>,
    /// Major version of the server. The plugin does not ask the server at startup (a server
    /// that is down would stall the whole aggregator), so it formats requests for this
    /// version. Default: 8 for Elasticsearch, 2 for OpenSearch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 99))]
    pub server_major_version: Option<i32>,
}

/// Grafana Loki.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LokiOutput {
    /// Base URL such as `https://loki.example:3100`.
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub url: String,
    /// Loki stream labels: label name → record key path such as `$.kubernetes.namespace_name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = crate::api::bounded_map::<32, 512>)]
    pub labels: BTreeMap<String, String>,
    /// Tenant (`X-Scope-OrgID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// TLS towards Loki.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OutputTls>,
}

/// Amazon S3 or a compatible object store.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Output {
    /// Bucket name.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9.-]{1,62}$"))]
    pub bucket: String,
    /// Region such as `eu-west-1`.
    #[schemars(regex(pattern = r"^[a-z0-9-]{1,32}$"))]
    pub region: String,
    /// Object key prefix. Default: `logs/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Endpoint of an S3-compatible store; unset for AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s]+$"))]
    pub endpoint: Option<String>,
    /// Access key id. Unset: the aggregator pod's own AWS identity (IRSA, instance profile),
    /// which an Output may use only when the Logging's `tenantLimits.allowAmbientCredentials`
    /// is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_secret_ref: Option<SecretKeyRef>,
    /// Secret access key; set together with `accessKeyIdSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_secret_ref: Option<SecretKeyRef>,
}

/// Apache Kafka.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaOutput {
    /// Bootstrap brokers as `host:port`.
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 261)))]
    pub brokers: Vec<String>,
    /// Topic records are produced to.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,249}$"))]
    pub topic: String,
    /// SASL/SCRAM authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSasl>,
    /// TLS towards the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OutputTls>,
}

/// SASL credentials for Kafka.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSasl {
    /// `sha256` or `sha512`.
    pub scram_mechanism: ScramMechanism,
    /// User name.
    pub username: String,
    /// Password.
    pub password_secret_ref: SecretKeyRef,
}

/// SCRAM mechanisms.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

/// Splunk HTTP Event Collector.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SplunkHecOutput {
    /// Host name of the collector.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// Port. Default: 8088.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// The HEC token.
    pub token_secret_ref: SecretKeyRef,
    /// Splunk index. Unset: the token's default index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// TLS towards the collector (HTTPS). Always used; plain HTTP is not offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OutputTls>,
}

/// Buffering of one output: always files on the aggregator's buffer volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BufferSpec {
    /// Largest chunk, a fluentd size such as `8m`. Default: `8m`; capped by the Logging's
    /// `tenantLimits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[kmgtKMGT]?$"))]
    pub chunk_limit_size: Option<String>,
    /// Largest total size of this buffer (per output instance and worker: the Flows of one
    /// namespace sending to this output share one), such as `1g`. Default: the share of the buffer volume the Logging reports in
    /// `status.buffers.perOutputDefault`; capped by the Logging's `tenantLimits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[kmgtKMGT]?$"))]
    pub total_limit_size: Option<String>,
    /// How often chunks are flushed, a fluentd time such as `30s`. Default: `10s`. Outputs
    /// that cut files or objects per hour (`file`, `s3`) also flush at this interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[smhd]?$"))]
    pub flush_interval: Option<String>,
    /// Parallel flushes. Default: 1; capped by the Logging's `tenantLimits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub flush_thread_count: Option<i32>,
    /// What to do when the buffer is full. Default: `drop_oldest_chunk`, so an output that is
    /// down for long loses its oldest records instead of blocking every other output; `block`
    /// applies backpressure to all flows, so Outputs may choose it only when the Logging's
    /// `tenantLimits.allowedOverflowActions` allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow_action: Option<OverflowAction>,
    /// Retry until delivered, never giving up. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_forever: Option<bool>,
    /// Give up on a chunk after this long, a fluentd time. Default: `72h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[smhd]?$"))]
    pub retry_timeout: Option<String>,
    /// Give up on a chunk after this many retries. Default: unlimited within `retryTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub retry_max_times: Option<i32>,
    /// Wait before the first retry. Default: `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[smhd]?$"))]
    pub retry_wait: Option<String>,
    /// Longest wait between retries. Default: `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[smhd]?$"))]
    pub retry_max_interval: Option<String>,
}

/// fluentd `overflow_action` values.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverflowAction {
    ThrowException,
    Block,
    DropOldestChunk,
}

/// A borrowed view of the one output kind an [`OutputSpec`] sets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OutputKind<'a> {
    File(&'a FileOutput),
    Null,
    Stdout,
    Forward(&'a ForwardOutput),
    Http(&'a HttpOutput),
    Elasticsearch(&'a SearchOutput),
    Opensearch(&'a SearchOutput),
    Loki(&'a LokiOutput),
    S3(&'a S3Output),
    Kafka(&'a KafkaOutput),
    SplunkHec(&'a SplunkHecOutput),
}

impl OutputSpec {
    /// Field names of the output kinds, as written in YAML.
    pub const KINDS: [&'static str; 11] = [
        "file",
        "nullOutput",
        "stdout",
        "forward",
        "http",
        "elasticsearch",
        "opensearch",
        "loki",
        "s3",
        "kafka",
        "splunkHec",
    ];

    /// Every kind that is set. Exactly one is valid; the API server enforces that, and the
    /// offline path checks it with this.
    pub fn kinds(&self) -> Vec<OutputKind<'_>> {
        self.each_kind().collect()
    }

    /// The first kind that is set: the kind of a validated output, which sets exactly one.
    /// Asked several times per output on every reconcile, so it allocates nothing.
    pub fn kind(&self) -> Option<OutputKind<'_>> {
        self.each_kind().next()
    }

    fn each_kind(&self) -> impl Iterator<Item = OutputKind<'_>> {
        [
            self.file.as_deref().map(OutputKind::File),
            self.null_output.as_ref().map(|_| OutputKind::Null),
            self.stdout.as_ref().map(|_| OutputKind::Stdout),
            self.forward.as_deref().map(OutputKind::Forward),
            self.http.as_deref().map(OutputKind::Http),
            self.elasticsearch.as_deref().map(OutputKind::Elasticsearch),
            self.opensearch.as_deref().map(OutputKind::Opensearch),
            self.loki.as_deref().map(OutputKind::Loki),
            self.s3.as_deref().map(OutputKind::S3),
            self.kafka.as_deref().map(OutputKind::Kafka),
            self.splunk_hec.as_deref().map(OutputKind::SplunkHec),
        ]
        .into_iter()
        .flatten()
    }
}
