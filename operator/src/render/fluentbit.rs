//! The fluent-bit agent configuration (YAML format): tail container logs of the namespaces
//! some flow can take, attach Kubernetes metadata, route each record at the edge (the Lua
//! filter of [`super::edge`], then `rewrite_tag`), forward over mutual TLS to the aggregator.
//! Serialised with serde-saphyr, so no value can add YAML structure; the only user strings
//! are namespace and container names, which must be RFC 1123 labels to be used at all.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::api::{TlsMode, TlsVersion};
use crate::layout;
use crate::model::Pipeline;
use crate::routing::{Action, Scope, Watched};

use super::ConfigFile;
use super::edge;
use super::escape::{checked, is_dns_label};

/// Longest an aggregator may stay silent on a connection with a chunk in flight before the
/// agent gives up on it and retries the chunk. Long enough for fluentd to buffer the biggest
/// chunk under load; a tenant's `overflowAction: block` can make an acknowledgement slower,
/// and then the retry may deliver the chunk twice.
const AGGREGATOR_IO_TIMEOUT: &str = "60s";
/// Where the kubelet links container logs: `<pod>_<namespace>_<container>-<id>.log`.
pub const CONTAINER_LOG_DIR: &str = "/var/log/containers";
/// `storage.max_chunks_up`: above the number of routes one node can have active at once.
const MAX_CHUNKS_UP: &str = "2048";
/// The tail input's `static_batch_size` and `event_batch_size`: how many bytes one read
/// callback takes from the files with data before it returns (fluent-bit's default is 50M,
/// plugins/in_tail/tail.h). One thread runs the tail input, the filters, the flush timer and
/// the outputs' completions (src/flb_engine.c), so a callback reading 2,000 busy files held
/// every flush back for 10-18 s while it worked, and the routed copies waited in the
/// emitter's queue in memory. About 2,000 log lines, a few tens of milliseconds.
const TAIL_BATCH_SIZE: &str = "256K";
/// Name of the tag parser the kubernetes filter uses.
const TAG_PARSER: &str = "sluice-kube-tag";

/// The tail input's multiline parsers, fluent-bit's built-in `docker` and `cri`.
const MULTILINE_PARSERS: &str = "docker, cri";
/// Keys those parsers write (fluent-bit src/multiline/flb_ml_parser_{docker,cri}.c: the log
/// line, the stream, and `time`, which both keep; `cri` also keeps its partial flag `_p`).
const PARSER_KEYS: [&str; 4] = ["log", "stream", "time", "_p"];
/// Where the kubernetes filter puts a log line that parsed as JSON. With `keep_log off` the
/// line's `log` key is then dropped; a line that is not JSON keeps `log`.
pub const MERGE_LOG_KEY: &str = "log_processed";
/// The kubernetes filter's metadata keys (plugins/filter_kubernetes/kubernetes.c).
const KUBERNETES_KEY: &str = "kubernetes";
const KUBERNETES_NAMESPACE_KEY: &str = "kubernetes_namespace";

/// Every top-level record key the rendered agent can send: what filters in the aggregator
/// may name. Built from the same constants as the configuration.
pub fn emitted_record_keys(pipeline: &Pipeline) -> BTreeSet<&'static str> {
    let mut keys: BTreeSet<&'static str> = PARSER_KEYS.into_iter().collect();
    keys.insert(MERGE_LOG_KEY);
    keys.insert(KUBERNETES_KEY);
    if uses_namespace_labels(pipeline) {
        keys.insert(KUBERNETES_NAMESPACE_KEY);
    }
    keys
}

static BUFFER_SIZE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9]+[KMG]?$").unwrap_or_else(|_| unreachable!()));
static DURATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9]+[smhd]?$").unwrap_or_else(|_| unreachable!()));

/// A YAML mapping that keeps the order its entries were written in.
#[derive(Default)]
struct Section(Vec<(&'static str, Value)>);

enum Value {
    Str(String),
    List(Vec<Section>),
    Map(Section),
}

impl Section {
    fn set(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.0.push((key, Value::Str(value.into())));
        self
    }
    fn list(mut self, key: &'static str, items: Vec<Section>) -> Self {
        self.0.push((key, Value::List(items)));
        self
    }
    fn map(mut self, key: &'static str, section: Section) -> Self {
        self.0.push((key, Value::Map(section)));
        self
    }
}

impl Serialize for Section {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            match value {
                Value::Str(s) => map.serialize_entry(key, s)?,
                Value::List(items) => map.serialize_entry(key, items)?,
                Value::Map(section) => map.serialize_entry(key, section)?,
            }
        }
        map.end()
    }
}

fn on_off(value: bool) -> &'static str {
    if value { "on" } else { "off" }
}

/// Namespaces whose logs some flow (or the default flow) can take; `None` means any.
fn reachable_namespaces(pipeline: &Pipeline) -> Option<BTreeSet<String>> {
    if pipeline.default_flow.is_some() {
        return None;
    }
    let mut namespaces = BTreeSet::new();
    for flow in &pipeline.flows {
        let matcher = &flow.matcher;
        match &matcher.scope {
            Scope::Namespace(ns) => {
                namespaces.insert(ns.clone());
            }
            Scope::Cluster => {
                let everything_except = matcher
                    .rules
                    .iter()
                    .all(|rule| rule.action == Action::Exclude);
                if everything_except {
                    return None;
                }
                for rule in matcher.rules.iter().filter(|r| r.action == Action::Select) {
                    if rule.selector.namespaces.is_empty() {
                        return None;
                    }
                    namespaces.extend(rule.selector.namespaces.iter().cloned());
                }
            }
        }
    }
    Some(namespaces)
}

/// Whether any flow routes on namespace labels (then the agent must attach them).
pub fn uses_namespace_labels(pipeline: &Pipeline) -> bool {
    pipeline
        .flows
        .iter()
        .chain(pipeline.default_flow.iter())
        .flat_map(|flow| &flow.matcher.rules)
        .any(|rule| !rule.selector.namespace_labels.is_empty())
}

/// Container names every flow rejects before any other rule: each flow starts with exclude
/// rules naming only containers, and the name is among them. Their records could never be
/// taken, so they are not read at all.
pub fn rejected_containers(pipeline: &Pipeline) -> BTreeSet<String> {
    if pipeline.default_flow.is_some() || pipeline.flows.is_empty() {
        return BTreeSet::new();
    }
    let per_flow = pipeline.flows.iter().map(|flow| {
        flow.matcher
            .rules
            .iter()
            .take_while(|rule| {
                let s = &rule.selector;
                rule.action == Action::Exclude
                    && !s.container_names.is_empty()
                    && s.namespaces.is_empty()
                    && s.namespace_labels.is_empty()
                    && s.labels.is_empty()
                    && s.hosts.is_empty()
            })
            .flat_map(|rule| rule.selector.container_names.iter().cloned())
            .collect::<BTreeSet<String>>()
    });
    let mut common: Option<BTreeSet<String>> = None;
    for set in per_flow {
        common = Some(match common {
            None => set,
            Some(c) => c.intersection(&set).cloned().collect(),
        });
    }
    common
        .unwrap_or_default()
        .into_iter()
        .filter(|c| is_dns_label(c))
        .collect()
}

/// What the agent tails: `None` when no namespace can be taken (no tail input at all),
/// else the `path` globs.
pub fn tail_paths(pipeline: &Pipeline) -> Option<Vec<String>> {
    let reachable = reachable_namespaces(pipeline);
    let namespaces: Option<BTreeSet<String>> = match (&pipeline.watched, reachable) {
        (Watched::All, None) => None,
        (Watched::All, Some(r)) => Some(r),
        (Watched::Only(w), None) => Some(w.clone()),
        (Watched::Only(w), Some(r)) => Some(w.intersection(&r).cloned().collect()),
    };
    match namespaces {
        None => Some(vec![format!("{CONTAINER_LOG_DIR}/*.log")]),
        Some(set) => {
            // Only RFC 1123 labels can be namespaces; anything else could widen the glob.
            let globs: Vec<String> = set
                .iter()
                .filter(|ns| is_dns_label(ns))
                .map(|ns| format!("{CONTAINER_LOG_DIR}/*_{ns}_*.log"))
                .collect();
            (!globs.is_empty()).then_some(globs)
        }
    }
}

/// Glob of one container's log files in any pod and namespace; the 64 `?` are the
/// container ID, so `app` does not also match a container called `app-sidecar`.
fn container_glob(container: &str) -> String {
    format!("{CONTAINER_LOG_DIR}/*_*_{container}-{}.log", "?".repeat(64))
}

fn tls_version(version: TlsVersion) -> &'static str {
    match version {
        TlsVersion::Tls12 => "TLSv1.2",
        TlsVersion::Tls13 => "TLSv1.3",
    }
}

/// The agent's configuration files.
pub fn agent(pipeline: &Pipeline) -> Vec<ConfigFile> {
    let spec = &pipeline.spec;
    let agent = spec.agent.clone().unwrap_or_default();
    let metadata = agent.kubernetes_metadata.clone().unwrap_or_default();
    let tls = spec.tls_or_default();
    let state = layout::AGENT_STATE_DIR;

    let service = Section::default()
        .set("flush", "1")
        .set("log_level", "info")
        .set("http_server", "on")
        .set("http_listen", "0.0.0.0")
        .set(
            "http_port",
            agent
                .metrics_port
                .unwrap_or(layout::DEFAULT_AGENT_METRICS_PORT)
                .to_string(),
        )
        .set("health_check", "on")
        .set("hot_reload", "on")
        .set("storage.path", format!("{state}/storage"))
        .set("storage.sync", "normal")
        // Every route active on the node holds a chunk of its own (the emitter keeps one per
        // tag): at fluent-bit's default of 128 a node with more routes than that paused its
        // inputs on every flush (docs/dataplane.md, "The agent").
        .set("storage.max_chunks_up", MAX_CHUNKS_UP)
        .set("storage.backlog.mem_limit", "16M");

    let parsers = vec![
        Section::default()
            .set("name", TAG_PARSER)
            .set("format", "regex")
            .set(
                "regex",
                r"^(?<namespace_name>[^.]+)\.(?<pod_name>.+)\.(?<container_name>[^.]+)\.(?<docker_id>[a-z0-9]{64})$",
            ),
    ];

    let mut inputs = Vec::new();
    if let Some(paths) = tail_paths(pipeline) {
        let mut tail = Section::default()
            .set("name", "tail")
            .set("alias", "containers")
            .set("path", paths.join(","));
        let rejected = rejected_containers(pipeline);
        if !rejected.is_empty() {
            let globs: Vec<String> = rejected.iter().map(|c| container_glob(c)).collect();
            tail = tail.set("exclude_path", globs.join(","));
        }
        tail = tail
            .set("tag", "kube.<namespace_name>.<pod_name>.<container_name>.<docker_id>")
            .set(
                "tag_regex",
                r"^/var/log/containers/(?<pod_name>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*)_(?<namespace_name>[^_]+)_(?<container_name>.+)-(?<docker_id>[a-z0-9]{64})\.log$",
            )
            .set("multiline.parser", MULTILINE_PARSERS)
            .set("db", format!("{state}/containers.db"))
            .set("db.locking", "true")
            .set("skip_long_lines", "on")
            .set("refresh_interval", "10")
            .set("static_batch_size", TAIL_BATCH_SIZE)
            .set("event_batch_size", TAIL_BATCH_SIZE)
            // Every record leaves the tail's chunks inside the filters (re-tagged into the
            // emitter, whose chunks are on disk, or dropped), so they never hold a record; on
            // disk each read created and deleted a chunk file, 30 % of the pipeline thread's
            // time with 2,000 files (benches/README.md).
            .set("storage.type", "memory");
        inputs.push(tail);
    }

    let filters = vec![
        Section::default()
            .set("name", "kubernetes")
            .set("match", "kube.*")
            .set("kube_tag_prefix", "kube.")
            .set("regex_parser", TAG_PARSER)
            // Parsed JSON goes under its own key, so an application cannot overwrite the
            // `kubernetes` metadata the aggregator routes on.
            .set("merge_log", "on")
            .set("merge_log_key", MERGE_LOG_KEY)
            .set("keep_log", "off")
            .set("labels", "on")
            .set("annotations", on_off(metadata.annotations.unwrap_or(false)))
            .set("namespace_labels", on_off(uses_namespace_labels(pipeline)))
            .set(
                "k8s-logging.exclude",
                on_off(crate::model::limits::pod_opt_out_allowed(&pipeline.spec)),
            )
            .set("k8s-logging.parser", "off")
            .set("use_kubelet", on_off(metadata.use_kubelet.unwrap_or(false)))
            .set(
                "kube_meta_cache_ttl",
                checked(metadata.cache_ttl.as_deref(), &DURATION, "10m"),
            )
            .set("buffer_size", "256k"),
        // The routing contract, applied here: records no flow takes end; a record k flows
        // take becomes k records, each with its route under `edge::ROUTE_KEY`.
        Section::default()
            .set("name", "lua")
            .set("alias", "sluice-router")
            .set("match", "kube.*")
            .set(
                "script",
                format!(
                    "{}/{}",
                    layout::RELOAD_SHARED_DIR,
                    edge::agent_script().name
                ),
            )
            .set("call", edge::LUA_FUNCTION),
        // Re-tag each routed record `sluice.<route>`; `false` drops the `kube.*` original.
        // The emitter keeps its chunks on disk like the tail input, so a slow aggregator
        // backs up to the filesystem buffer instead of losing records held in memory. Its
        // memory limit is off: over it the emitter refuses a record, and rewrite_tag then
        // keeps it under its `kube.*` tag, which no output takes (lost without a word).
        // Back-pressure comes from the emitter pausing itself and the tail input at
        // `storage.max_chunks_up` instead (plugins/in_emitter/emitter.c).
        Section::default()
            .set("name", "rewrite_tag")
            .set("alias", "sluice-dispatch")
            .set("match", "kube.*")
            .set(
                "rule",
                format!(
                    "${} {} {}$1 false",
                    edge::ROUTE_KEY,
                    edge::ROUTE_PATTERN,
                    edge::TAG_PREFIX
                ),
            )
            .set("emitter_name", "sluice-routed")
            .set("emitter_storage.type", "filesystem")
            .set("emitter_mem_buf_limit", "0"),
        Section::default()
            .set("name", "record_modifier")
            .set("alias", "sluice-route-key")
            .set("match", format!("{}*", edge::TAG_PREFIX))
            .set("remove_key", edge::ROUTE_KEY),
    ];

    let host = pipeline.names.aggregator_host();
    let port = spec
        .aggregator
        .as_ref()
        .and_then(|a| a.port)
        .unwrap_or(layout::DEFAULT_AGGREGATOR_PORT);
    let mut forward = Section::default()
        .set("name", "forward")
        .set("alias", "aggregator")
        // Only routed records leave the node; a `kube.*` record the router did not re-tag
        // (a Lua error keeps a chunk as it was) matches no output and is dropped.
        .set("match", format!("{}*", edge::TAG_PREFIX))
        .set("host", host.clone())
        .set("port", port.to_string());
    if tls.mode.unwrap_or_default() == TlsMode::Disabled {
        forward = forward.set("tls", "off");
    } else {
        let tls_file = |key: &str| format!("{}/{key}", layout::AGENT_TLS_DIR);
        forward = forward
            .set("tls", "on")
            .set("tls.verify", "on")
            .set("tls.verify_hostname", "on")
            .set("tls.vhost", host)
            .set("tls.ca_file", tls_file(layout::CA_CERT_KEY))
            .set("tls.crt_file", tls_file(layout::TLS_CERT_KEY))
            .set("tls.key_file", tls_file(layout::TLS_KEY_KEY))
            .set(
                "tls.min_version",
                tls_version(tls.min_version.unwrap_or(TlsVersion::Tls12)),
            )
            .set(
                "tls.max_version",
                tls_version(tls.max_version.unwrap_or(TlsVersion::Tls13)),
            );
    }
    forward = forward
        .set("shared_key", format!("${{{}}}", layout::SHARED_KEY_ENV))
        .set("self_hostname", format!("${{{}}}", layout::NODE_NAME_ENV))
        // fluentd drops every record ("skip invalid event") when metadata is retained.
        .set("retain_metadata_in_forward_mode", "false")
        .set("require_ack_response", "true")
        // fluent-bit waits for an acknowledgement as long as the connection stays open
        // (`net.io_timeout` defaults to 0, no limit: src/flb_upstream.c): an aggregator that
        // keeps a connection but never answers (a stuck worker, a peer gone without a reset)
        // would hold the chunk forever. Past this the chunk fails and is retried.
        .set("net.io_timeout", AGGREGATOR_IO_TIMEOUT)
        .set("net.keepalive", "on")
        // Fresh connections every few hundred chunks spread agents over aggregator replicas
        // and pick up rotated certificates.
        .set("net.keepalive_max_recycle", "200")
        .set("net.keepalive_idle_timeout", "30")
        .set("retry_limit", "false")
        .set(
            "storage.total_limit_size",
            checked(agent.filesystem_buffer_limit.as_deref(), &BUFFER_SIZE, "1G"),
        );

    let pipeline_section = Section::default()
        .list("inputs", inputs)
        .list("filters", filters)
        .list("outputs", vec![forward]);
    let document = Section::default()
        .map("service", service)
        .list("parsers", parsers)
        .map("pipeline", pipeline_section);

    let body = match serde_saphyr::to_string(&document) {
        Ok(body) => body,
        // Serialising strings and maps cannot fail; keep the agent on a config that
        // reads nothing rather than panic.
        Err(error) => format!("# serialisation failed: {error}\n"),
    };
    let content = format!(
        "# Rendered by Sluice for Logging {}. Generated; edits are overwritten.\n{body}",
        super::escape::comment_text(&pipeline.logging)
    );
    vec![
        ConfigFile {
            name: layout::AGENT_CONFIG_FILE.to_owned(),
            content,
        },
        edge::agent_script(),
    ]
}
