//! Load benchmark of the operator against the cluster `KUBECONFIG` points at
//! (operator/benches/README.md, "Operator at scale").
//!
//! It starts `sluice run` as a child process (so its memory is the operator's alone), creates
//! one Logging and N Flows with one Output each, and measures: time until the config Secrets
//! hold every flow and until every Flow's status is current, the latency of single edits
//! (observed through a watch on Sluice's Secrets, not by polling), how many Secret and status
//! writes each edit caused, and the operator's resident memory. It prints one table.
//!
//! No data plane runs, so the bench answers for it: the operator gives agents a new flow's
//! route, and calls a Flow Running, only once every aggregator pod's reloader reports a
//! revision dispatching it (docs/architecture.md, "A revision is one unit across
//! components"). The bench serves that reloader status on 127.0.0.1, reporting the newest
//! aggregator candidate as accepted and running the moment it is written, and starts the
//! operator in a mount namespace of its own whose /etc/hosts points the aggregator's
//! headless Service at it (`unshare`, so run it as root). What it measures is the operator
//! alone, as if the data plane reloaded instantly.
//!
//! ```sh
//! cargo build --release -p sluice -p e2e
//! target/release/sluice-load --operator target/release/sluice --flows 1000 --edits 50
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use e2e::{MANAGER, apply_documents, install_crds, wait_for};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use sluice::api::{Flow, Logging};

#[derive(Parser, Debug)]
#[command(about = "Load benchmark of the Sluice operator against a real cluster")]
struct Args {
    /// Number of Flows (each with its own Output).
    #[arg(long, default_value_t = 1000)]
    flows: usize,
    /// Number of single-Flow edits to time.
    #[arg(long, default_value_t = 50)]
    edits: usize,
    /// Team namespaces the Flows are spread over.
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// The `sluice` binary to run as the operator; without it an operator must already run
    /// (and its memory is not measured).
    #[arg(long)]
    operator: Option<PathBuf>,
    /// Leave everything in place afterwards.
    #[arg(long)]
    keep: bool,
    /// Where the stand-in reloader listens (the operator is told the aggregator's pods are
    /// there); the port is the reloaders' own.
    #[arg(long, default_value = "127.0.0.1")]
    reloader_address: std::net::Ipv4Addr,
}

const LOGGING: &str = "sluice-load";
const CONTROL: &str = "sluice-load-system";
const LABEL: &str = "sluice-load";
/// Where the Logging's per-namespace pair limit sits in its CRD schema.
const OUTPUT_LIMIT_SCHEMA: &str =
    "/properties/spec/properties/tenantLimits/properties/maxOutputsPerNamespace";

fn team_namespace(index: usize, namespaces: usize) -> String {
    format!("sluice-load-{:03}", index % namespaces.max(1))
}

/// One Flow and its Output; `marker` lands in the agent's routing table (the select label)
/// and `filter_marker`, when set, in the aggregator's config (a record_transformer value).
fn flow_documents(
    index: usize,
    namespaces: usize,
    marker: &str,
    filter_marker: Option<&str>,
) -> [Value; 2] {
    let namespace = team_namespace(index, namespaces);
    let name = format!("flow-{index:05}");
    let filters = match filter_marker {
        Some(value) => json!([{"recordTransformer": {"records": {"load_marker": value}}}]),
        None => json!([]),
    };
    [
        json!({
            "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Output",
            "metadata": {"name": name, "namespace": namespace, "labels": {LABEL: "true"}},
            "spec": {"nullOutput": {}},
        }),
        json!({
            "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Flow",
            "metadata": {"name": name, "namespace": namespace, "labels": {LABEL: "true"}},
            "spec": {
                "match": [
                    {"exclude": {"labels": {"noise": "true"}}},
                    {"select": {"labels": {"app": marker}}},
                ],
                "filters": filters,
                "localOutputRefs": [name],
            },
        }),
    ]
}

/// The generated CRDs' validation of created objects, as the API server runs it: the OpenAPI
/// schema (types, ranges, lengths, patterns) and the CEL rules. The bench checks what it is
/// about to create before it starts anything, so a setting the CRDs reject stops it with the
/// field and the rule instead of an HTTP 422 halfway through a run.
struct CrdValidation {
    /// By kind: the CRD's `openAPIV3Schema` and it compiled as a JSON Schema.
    kinds: BTreeMap<String, (Value, jsonschema::Validator)>,
}

impl CrdValidation {
    fn new() -> Result<Self> {
        let mut kinds = BTreeMap::new();
        for crd in sluice::api::crds() {
            let kind = crd.spec.names.kind.clone();
            let schema = crd
                .spec
                .versions
                .iter()
                .find(|v| v.storage)
                .and_then(|v| v.schema.as_ref())
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .with_context(|| format!("the {kind} CRD has no schema"))?;
            let schema = serde_json::to_value(schema)?;
            // Formats are checked by the API server only for a few names it knows; the
            // generated ones (int32, ...) say nothing a type and range do not.
            let validator = jsonschema::draft4::options()
                .should_validate_formats(false)
                .build(&json_schema(&schema))
                .map_err(|e| anyhow::anyhow!("the {kind} CRD's schema: {e}"))?;
            kinds.insert(kind, (schema, validator));
        }
        Ok(Self { kinds })
    }

    /// The largest value the Logging CRD allows for a number field (a JSON pointer into its
    /// schema).
    fn logging_maximum(&self, pointer: &str) -> Option<f64> {
        let (schema, _) = self.kinds.get("Logging")?;
        schema.pointer(pointer)?.get("maximum")?.as_f64()
    }

    /// Every reason the API server would refuse `document`; none for kinds that are not
    /// Sluice's.
    fn violations(&self, document: &Value) -> Vec<String> {
        let Some((schema, validator)) = document["kind"].as_str().and_then(|k| self.kinds.get(k))
        else {
            return Vec::new();
        };
        let mut found: Vec<String> = validator
            .iter_errors(document)
            .map(|e| format!("{}: {e}", field_path(&e.instance_path().to_string())))
            .collect();
        if let Err(errors) = kube::core::cel::Validator::new().validate(schema, document, None) {
            found.extend(
                errors
                    .as_slice()
                    .iter()
                    .map(|e| format!("{}: {}", e.field_path, e.message)),
            );
        }
        found
    }

    /// Fails with every violation of every document, naming the object and field.
    fn check<'a>(&self, documents: impl IntoIterator<Item = &'a Value>) -> Result<()> {
        let mut refused = Vec::new();
        for document in documents {
            for violation in self.violations(document) {
                let name = document["metadata"]["name"].as_str().unwrap_or_default();
                let object = match document["metadata"]["namespace"].as_str() {
                    Some(namespace) => format!("{namespace}/{name}"),
                    None => name.to_owned(),
                };
                let kind = document["kind"].as_str().unwrap_or_default();
                refused.push(format!("{kind} {object}: {violation}"));
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        bail!(
            "the API server would reject what these settings generate (checked against the CRDs \
             in crds/):\n  {}",
            refused.join("\n  ")
        )
    }
}

/// `/spec/a/0` as `spec.a[0]`, the way the API server names fields.
fn field_path(pointer: &str) -> String {
    let mut path = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            path.push_str(&format!("[{part}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(part);
        }
    }
    if path.is_empty() {
        "(object)".to_owned()
    } else {
        path
    }
}

/// A CRD's OpenAPI v3 schema as a JSON Schema (draft 4) says the same: `nullable` admits
/// null, and `x-kubernetes-int-or-string` (which carries no `type`) an integer or a string.
fn json_schema(openapi: &Value) -> Value {
    match openapi {
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .map(|(key, value)| {
                    let value = match key.as_str() {
                        // Maps of schemas, not schemas.
                        "properties" => Value::Object(
                            value
                                .as_object()
                                .map(|props| {
                                    props
                                        .iter()
                                        .map(|(k, v)| (k.clone(), json_schema(v)))
                                        .collect()
                                })
                                .unwrap_or_default(),
                        ),
                        // Data, not schemas.
                        "enum" | "required" | "x-kubernetes-validations" => value.clone(),
                        _ => json_schema(value),
                    };
                    (key.clone(), value)
                })
                .collect();
            if map.get("nullable") == Some(&Value::Bool(true))
                && let Some(Value::String(type_)) = map.get("type")
            {
                out.insert("type".into(), json!([type_, "null"]));
            }
            if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
                out.insert("type".into(), json!(["integer", "string"]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(json_schema).collect()),
        other => other.clone(),
    }
}

/// What the Secret watch saw: every write to one of the Logging's Secrets, and their latest
/// decoded contents.
#[derive(Default)]
struct SecretLog {
    writes: Vec<(Instant, String)>,
    latest: BTreeMap<String, String>,
    /// The routes and the revision of the newest aggregator candidate.
    aggregator_routes: BTreeSet<String>,
    aggregator_candidate: Option<String>,
}

impl SecretLog {
    fn text_containing(&self, needle: &str) -> bool {
        self.latest.values().any(|text| text.contains(needle))
    }

    /// Flow routes the aggregator's candidate dispatches (its `routes.list`).
    fn aggregator_flows(&self) -> usize {
        self.aggregator_routes
            .iter()
            .filter(|route| route.starts_with("flow-"))
            .count()
    }

    fn writes_since(&self, since: Instant) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (_, name) in self.writes.iter().filter(|(at, _)| *at >= since) {
            *counts.entry(name.clone()).or_insert(0) += 1;
        }
        counts
    }
}

/// What the Flow watch saw: status writes, and which Flows have a current, Ready status.
#[derive(Default)]
struct FlowLog {
    status_writes: Vec<Instant>,
    statuses: BTreeMap<String, Value>,
    current: BTreeSet<String>,
}

fn secret_text(secret: &Secret) -> String {
    let mut text = String::new();
    for value in secret.data.iter().flat_map(|d| d.values()) {
        text.push_str(&String::from_utf8_lossy(&value.0));
        text.push('\n');
    }
    text
}

/// Every object `api` and `config` select, as it is created or changed. A watch error (a
/// dropped connection, an expired resourceVersion) must not end what the bench sees: it is
/// reported and the watcher re-lists after a backoff.
fn applied_objects<K>(
    api: Api<K>,
    config: watcher::Config,
) -> futures::stream::BoxStream<'static, K>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    watcher(api, config)
        .default_backoff()
        .applied_objects()
        .filter_map(|item| async move {
            item.map_err(|error| eprintln!("sluice-load: watch error, re-listing: {error}"))
                .ok()
        })
        .boxed()
}

fn watch_secrets(client: Client, log: Arc<Mutex<SecretLog>>) {
    let api: Api<Secret> = Api::namespaced(client, CONTROL);
    let config =
        watcher::Config::default().labels(&format!("{}={LOGGING}", sluice::layout::LOGGING_LABEL));
    let aggregator_main = names().aggregator_config_secret();
    tokio::spawn(async move {
        let mut stream = applied_objects(api, config);
        let mut versions: BTreeMap<String, String> = BTreeMap::new();
        while let Some(secret) = stream.next().await {
            let name = secret.name_any();
            let version = secret.resource_version().unwrap_or_default();
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            // A re-list replays every object; only a new resourceVersion is a write.
            if versions.insert(name.clone(), version.clone()) != Some(version) {
                log.writes.push((Instant::now(), name.clone()));
                if name == aggregator_main {
                    let file = |key: &str| {
                        secret
                            .data
                            .as_ref()
                            .and_then(|data| data.get(key))
                            .map(|value| String::from_utf8_lossy(&value.0).into_owned())
                    };
                    if let Some(routes) = file(sluice::layout::ROUTES_LIST_FILE) {
                        log.aggregator_routes = sluice::render::edge::parse_routes_list(&routes);
                    }
                    log.aggregator_candidate = file(sluice::bundle::MANIFEST_FILE)
                        .and_then(|m| sluice::bundle::Manifest::from_json(m.as_bytes()).ok())
                        .map(|manifest| manifest.revision);
                }
                log.latest.insert(name, secret_text(&secret));
            }
        }
    });
}

fn names() -> sluice::layout::Names {
    sluice::layout::Names::new(LOGGING, CONTROL)
}

/// The stand-in for every aggregator pod's reloader: `GET /status` answers that the newest
/// candidate the operator wrote was accepted and runs.
async fn serve_reloader_status(
    address: std::net::Ipv4Addr,
    secrets: Arc<Mutex<SecretLog>>,
) -> Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let port = u16::try_from(sluice::layout::RELOADER_PORT).unwrap_or(8099);
    let listener = tokio::net::TcpListener::bind((address, port))
        .await
        .with_context(|| format!("the stand-in reloader cannot listen on {address}:{port}"))?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let secrets = secrets.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let revision = secrets
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .aggregator_candidate
                    .clone();
                let status = sluice::bundle::ReloaderStatus {
                    running: revision.clone(),
                    candidate: revision.clone(),
                    accepted: revision.into_iter().collect(),
                    buffered_chunks: Some(0),
                    ..Default::default()
                };
                let body = serde_json::to_string(&status).unwrap_or_default();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(())
}

/// An /etc/hosts for the operator naming the stand-in as the aggregator's only pod.
fn operator_hosts(address: std::net::Ipv4Addr) -> Result<PathBuf> {
    let names = names();
    let service = format!(
        "{}.{}.svc",
        names.aggregator_headless_service(),
        names.control_namespace
    );
    let pod = format!("{}-0.{service}", names.aggregator());
    let path = std::env::temp_dir().join(format!("sluice-load-hosts-{}", std::process::id()));
    std::fs::write(
        &path,
        format!("127.0.0.1 localhost\n{address} {service}\n{address} {pod}\n"),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The Flow runs at its current generation: with the stand-in reloader answering at once,
/// every Flow gets there, so a status still Pending is one the operator has yet to write.
fn is_current(flow: &Flow) -> bool {
    let Some(status) = &flow.status else {
        return false;
    };
    status.observed_generation == flow.metadata.generation
        && status.conditions.iter().any(|c| {
            c.type_ == "Ready"
                && c.status == "True"
                && c.observed_generation == flow.metadata.generation
        })
}

fn watch_flows(client: Client, log: Arc<Mutex<FlowLog>>) {
    let api: Api<Flow> = Api::all(client);
    let config = watcher::Config::default().labels(&format!("{LABEL}=true"));
    tokio::spawn(async move {
        let mut stream = applied_objects(api, config);
        while let Some(flow) = stream.next().await {
            let key = format!(
                "{}/{}",
                flow.namespace().unwrap_or_default(),
                flow.name_any()
            );
            let status = serde_json::to_value(&flow.status).unwrap_or(Value::Null);
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            if !status.is_null() && log.statuses.get(&key) != Some(&status) {
                log.status_writes.push(Instant::now());
                log.statuses.insert(key.clone(), status);
            }
            if is_current(&flow) {
                log.current.insert(key);
            } else {
                log.current.remove(&key);
            }
        }
    });
}

/// Resident and peak memory of a process, from /proc (KiB).
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(kib: Option<(u64, u64)>, peak: bool) -> String {
    match kib {
        Some((rss, hwm)) => format!("{:.1} MiB", (if peak { hwm } else { rss }) as f64 / 1024.0),
        None => "not measured".to_owned(),
    }
}

/// The operator's `/metrics` text (OpenMetrics), over plain HTTP/1.1.
fn scrape_metrics(port: u16) -> Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (_, body) = response
        .split_once("\r\n\r\n")
        .context("no HTTP body from /metrics")?;
    Ok(body.to_owned())
}

/// The sum of every sample of `name` whose labels include each of `labels` (`key="value"`).
fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|l| rest.contains(l)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Finished reconciles and those slower than the first duration bucket of at least `secs`
/// (the buckets double from 5 ms), with that bucket's bound.
fn slow_reconciles(text: &str, secs: f64) -> (f64, f64, f64) {
    let finished = metric_sum(text, "sluice_reconcile_duration_seconds_count", &[]);
    // (bound, count) of every duration bucket sample, across kinds and outcomes.
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with("sluice_reconcile_duration_seconds_bucket{"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?.parse().ok()?;
            let count = l.rsplit_once(' ')?.1.parse().ok()?;
            Some((le, count))
        })
        .collect();
    let bound = buckets
        .iter()
        .map(|(le, _)| *le)
        .filter(|le| *le >= secs)
        .fold(f64::INFINITY, f64::min);
    let within: f64 = buckets
        .iter()
        .filter(|(le, _)| *le == bound)
        .map(|(_, count)| count)
        .sum();
    (finished, finished - within, bound)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn until<F: FnMut() -> bool>(what: &str, timeout: Duration, mut done: F) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Applies an edited Flow and waits until `marker` shows in a config Secret: when the edit
/// was sent and how long it took to reach the config.
async fn timed_edit(
    client: &Client,
    secrets: &Mutex<SecretLog>,
    flow: Value,
    marker: &str,
) -> Result<(Instant, Duration)> {
    let edited = Instant::now();
    apply_all(client, vec![flow]).await?;
    let seen = until(
        &format!("edit {marker} in a config Secret"),
        Duration::from_secs(120),
        || {
            secrets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .text_containing(marker)
        },
    )
    .await?;
    Ok((edited, seen - edited))
}

async fn apply_all(client: &Client, documents: Vec<Value>) -> Result<()> {
    let params = PatchParams::apply(MANAGER).force();
    futures::stream::iter(documents)
        .map(|doc| {
            let client = client.clone();
            let params = params.clone();
            async move {
                let namespace = doc["metadata"]["namespace"].as_str().unwrap_or_default();
                let name = doc["metadata"]["name"].as_str().unwrap_or_default();
                let result = match doc["kind"].as_str() {
                    Some("Flow") => Api::<Flow>::namespaced(client, namespace)
                        .patch(name, &params, &Patch::Apply(&doc))
                        .await
                        .map(|_| ()),
                    _ => Api::<sluice::api::Output>::namespaced(client, namespace)
                        .patch(name, &params, &Patch::Apply(&doc))
                        .await
                        .map(|_| ()),
                };
                result.with_context(|| format!("applying {namespace}/{name}"))
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Outputs the busiest namespace holds: every Flow has its own Output.
fn outputs_per_namespace(args: &Args) -> usize {
    args.flows.div_ceil(args.namespaces.max(1)).max(1)
}

/// The control namespace, the team namespaces and the Logging, which admits every Output of
/// the busiest namespace (`tenantLimits.maxOutputsPerNamespace`).
fn base_documents(args: &Args) -> Vec<Value> {
    let mut base =
        vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CONTROL}})];
    for index in 0..args.namespaces {
        base.push(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": team_namespace(index, args.namespaces)}}));
    }
    let watched: Vec<String> = (0..args.namespaces)
        .map(|i| team_namespace(i, args.namespaces))
        .collect();
    base.push(json!({
        "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Logging",
        "metadata": {"name": LOGGING},
        "spec": {
            "controlNamespace": CONTROL,
            "watchNamespaces": watched,
            "tenantLimits": {"maxOutputsPerNamespace": outputs_per_namespace(args)},
            // One pod, which the bench's stand-in reloader answers for.
            "aggregator": {"replicas": 1},
        },
    }));
    base
}

/// Refuses settings whose objects the CRDs reject, before anything is started: the Logging,
/// and the first and last Flow and Output in every shape the run applies them (created,
/// select label edited, filter added).
fn check_settings(args: &Args, base: &[Value]) -> Result<()> {
    if args.flows == 0 || args.namespaces == 0 {
        bail!("--flows and --namespaces must be at least 1");
    }
    if args.namespaces > 1000 {
        bail!("--namespaces is at most 1000 (namespaces are numbered sluice-load-000 to -999)");
    }
    let crds = CrdValidation::new()?;
    let pairs = outputs_per_namespace(args);
    if let Some(maximum) = crds.logging_maximum(OUTPUT_LIMIT_SCHEMA)
        && pairs as f64 > maximum
    {
        let namespaces = (args.flows as f64 / maximum).ceil();
        bail!(
            "--flows {} over --namespaces {} puts {pairs} Flows, each with its Output, in one \
             namespace, and the Logging CRD allows at most {maximum} Outputs per \
             namespace (spec.tenantLimits.maxOutputsPerNamespace): use --namespaces {namespaces} or more",
            args.flows,
            args.namespaces,
        );
    }
    let mut samples: Vec<Value> = base.to_vec();
    let last = args.flows - 1;
    for index in [0, last] {
        let label = format!("app-{index}");
        samples.extend(flow_documents(index, args.namespaces, &label, None));
        let marker = format!("edit-{}-{index}", args.edits.max(5));
        samples.extend(flow_documents(index, args.namespaces, &marker, None));
        samples.extend(flow_documents(
            index,
            args.namespaces,
            &label,
            Some(&marker),
        ));
    }
    crds.check(&samples)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let base = base_documents(&args);
    check_settings(&args, &base)?;
    let client = Client::try_default()
        .await
        .context("no cluster: set KUBECONFIG")?;
    install_crds(&client).await?;
    apply_documents(&client, &base).await?;

    // A free port for the operator's /metrics, read at the end.
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{metrics_port}");
    let secrets = Arc::new(Mutex::new(SecretLog::default()));
    serve_reloader_status(args.reloader_address, secrets.clone()).await?;
    let hosts = operator_hosts(args.reloader_address)?;
    let operator = match &args.operator {
        Some(binary) => Some(Operator(
            // `sh` execs the operator, so the child's pid is the operator's.
            std::process::Command::new("unshare")
                .args(["--mount", "sh", "-c"])
                .arg(r#"mount --bind "$0" /etc/hosts && exec "$1" run --listen "$2" --control-namespaces "$3""#)
                .arg(&hosts)
                .arg(binary)
                .args([&listen, CONTROL])
                .env("SLUICE_LOG_FORMAT", "plain")
                // The operator logs to stdout; on the bench's stderr its warnings stay visible
                // and the table on stdout stays clean.
                .stdout(std::io::stderr())
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?,
        )),
        None => None,
    };
    let pid = operator.as_ref().map(|operator| operator.0.id());

    let flows = Arc::new(Mutex::new(FlowLog::default()));
    watch_secrets(client.clone(), secrets.clone());
    watch_flows(client.clone(), flows.clone());

    let loggings: Api<Logging> = Api::all(client.clone());
    wait_for("the Logging's status", || {
        let loggings = loggings.clone();
        async move { Ok(loggings.get(LOGGING).await?.status.is_some()) }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = pid.and_then(memory_kib);

    let n = args.flows;
    let documents: Vec<Value> = (0..n)
        .flat_map(|i| flow_documents(i, args.namespaces, &format!("app-{i}"), None))
        .collect();
    let started = Instant::now();
    apply_all(&client, documents).await?;
    let applied = started.elapsed();
    let config_at = until("the config of every flow", Duration::from_secs(600), || {
        let log = secrets.lock().unwrap_or_else(|e| e.into_inner());
        log.aggregator_flows() >= n && log.text_containing(&format!("app-{}", n - 1))
    })
    .await?;
    // Edits while the statuses of the new objects are still being written: the config path
    // must not wait for them.
    let mut burst_latencies = Vec::new();
    for edit in 0..5 {
        let pending = flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .current
            .len()
            < n;
        if !pending {
            break;
        }
        // From the end: the measured edits below start at flow 0, and an edit that also
        // undid a burst edit's filter would write both config places at once.
        let index = n - 1 - edit.min(n - 1);
        let marker = format!("burst-{edit}-{index}");
        let [_, flow] = flow_documents(
            index,
            args.namespaces,
            &format!("app-{index}"),
            Some(&marker),
        );
        let (_, latency) = timed_edit(&client, &secrets, flow, &marker).await?;
        burst_latencies.push(latency);
    }
    burst_latencies.sort();
    let status_at = until("every Flow's status", Duration::from_secs(1200), || {
        flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .current
            .len()
            >= n
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let converged = pid.and_then(memory_kib);

    let mut latencies = Vec::new();
    let mut secret_writes = Vec::new();
    let mut status_writes = Vec::new();
    for edit in 0..args.edits {
        let index = (edit * 7919) % n;
        let marker = format!("edit-{edit}-{index}");
        // Alternate: a select label lives in the agent's routing table, a filter in the
        // aggregator's config slot.
        let (label, filter) = if edit % 2 == 0 {
            (marker.clone(), None)
        } else {
            (format!("app-{index}"), Some(marker.as_str()))
        };
        let [_, flow] = flow_documents(index, args.namespaces, &label, filter);
        let (edited, latency) = timed_edit(&client, &secrets, flow, &marker).await?;
        latencies.push(latency);
        let key = format!("{}/flow-{index:05}", team_namespace(index, args.namespaces));
        until(
            &format!("edit {edit}'s status"),
            Duration::from_secs(60),
            || {
                flows
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .current
                    .contains(&key)
            },
        )
        .await?;
        // Whatever else the edit causes lands within this pause.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let writes = secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .writes_since(edited);
        secret_writes.push(writes.values().sum::<usize>());
        status_writes.push(
            flows
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .status_writes
                .iter()
                .filter(|at| **at >= edited)
                .count(),
        );
    }
    let after_edits = pid.and_then(memory_kib);
    latencies.sort();

    println!("| {n} flows, {} namespaces | measured |", args.namespaces);
    println!("|---|---|");
    println!(
        "| apply of {} objects (client side) | {:.1} s |",
        2 * n,
        applied.as_secs_f64()
    );
    println!(
        "| converge: config Secrets hold every flow | {:.2} s |",
        (config_at - started).as_secs_f64()
    );
    println!(
        "| converge: every Flow status current | {:.2} s |",
        (status_at - started).as_secs_f64()
    );
    println!(
        "| edit → config Secret, p50 ({} edits) | {} ms |",
        latencies.len(),
        percentile(&latencies, 50.0).as_millis()
    );
    println!(
        "| edit → config Secret, p99 | {} ms |",
        percentile(&latencies, 99.0).as_millis()
    );
    println!(
        "| edit → config Secret, max | {} ms |",
        latencies.last().copied().unwrap_or_default().as_millis()
    );
    if burst_latencies.is_empty() {
        println!(
            "| edit → config Secret while statuses are pending | statuses were written first |"
        );
    } else {
        println!(
            "| edit → config Secret while statuses are pending, max ({} edits) | {} ms |",
            burst_latencies.len(),
            burst_latencies
                .last()
                .copied()
                .unwrap_or_default()
                .as_millis()
        );
    }
    let max = |v: &[usize]| v.iter().copied().max().unwrap_or(0);
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len().max(1) as f64;
    println!(
        "| Secret writes per edit (mean / max) | {:.2} / {} |",
        mean(&secret_writes),
        max(&secret_writes)
    );
    println!(
        "| status writes per edit (mean / max) | {:.2} / {} |",
        mean(&status_writes),
        max(&status_writes)
    );
    println!("| operator RSS idle | {} |", mib(idle, false));
    println!(
        "| operator RSS after converge | {} |",
        mib(converged, false)
    );
    println!(
        "| operator RSS after edits / peak | {} / {} |",
        mib(after_edits, false),
        mib(after_edits, true)
    );

    if operator.is_some() {
        match scrape_metrics(metrics_port) {
            Ok(text) => {
                let started = metric_sum(&text, "sluice_reconciles_total", &[]);
                let (finished, slow, bound) = slow_reconciles(&text, 10.0);
                println!(
                    "| reconciles started / finished (`sluice_reconciles_total`) | {started} / {finished} |"
                );
                println!("| reconciles over {bound} s | {slow} |");
            }
            Err(error) => println!("| reconciles | metrics not read: {error} |"),
        }
    }

    if !args.keep {
        let delete = DeleteParams::default();
        let flows_api: Api<Flow> = Api::all(client.clone());
        for flow in flows_api
            .list(&ListParams::default().labels(&format!("{LABEL}=true")))
            .await?
        {
            let api: Api<Flow> =
                Api::namespaced(client.clone(), &flow.namespace().unwrap_or_default());
            let _ = api.delete(&flow.name_any(), &delete).await;
        }
        let outputs_api: Api<sluice::api::Output> = Api::all(client.clone());
        for output in outputs_api
            .list(&ListParams::default().labels(&format!("{LABEL}=true")))
            .await?
        {
            let api: Api<sluice::api::Output> =
                Api::namespaced(client.clone(), &output.namespace().unwrap_or_default());
            let _ = api.delete(&output.name_any(), &delete).await;
        }
        let _ = loggings.delete(LOGGING, &delete).await;
    }
    drop(operator);
    Ok(())
}

/// The operator the bench started. It is stopped however the bench ends: one left behind by
/// a failed run keeps writing to the cluster and takes CPU from the next run.
struct Operator(std::process::Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(flows: &str, namespaces: &str) -> Args {
        Args::parse_from(["sluice-load", "--flows", flows, "--namespaces", namespaces])
    }

    #[test]
    fn the_operator_is_stopped_when_the_bench_ends_early() {
        let child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("sleep starts");
        let process = PathBuf::from(format!("/proc/{}", child.id()));
        assert!(process.exists());
        // What a `?` leaving main early does to it.
        drop(Operator(child));
        assert!(!process.exists(), "the operator still runs");
    }

    #[test]
    fn the_objects_of_the_10000_flow_runs_pass_the_crds() {
        for namespaces in ["10", "20"] {
            let args = args("10000", namespaces);
            let checked = check_settings(&args, &base_documents(&args));
            assert!(checked.is_ok(), "{checked:?}");
        }
    }

    #[test]
    fn more_outputs_per_namespace_than_the_crd_allows_are_refused_with_the_namespaces_needed() {
        let args = args("10000", "5");
        let error = check_settings(&args, &base_documents(&args))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("at most 1000 Outputs per namespace")
                && error.contains("use --namespaces 10 or more"),
            "{error}"
        );
    }

    #[test]
    fn a_logging_the_crd_rejects_is_named_with_its_field() {
        let args = args("1000", "10");
        let mut base = base_documents(&args);
        let logging = base.last_mut().map(|l| &mut l["spec"]["tenantLimits"]);
        if let Some(limits) = logging {
            limits["maxOutputsPerNamespace"] = json!(100_000);
        }
        let error = CrdValidation::new()
            .and_then(|crds| crds.check(&base))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("Logging sluice-load: spec.tenantLimits.maxOutputsPerNamespace")
                && error.contains("1000"),
            "{error}"
        );
    }

    #[test]
    fn cel_rules_of_the_crds_are_checked_too() {
        let args = args("10", "1");
        let mut base = base_documents(&args);
        if let Some(logging) = base.last_mut() {
            // Valid to the OpenAPI schema; only a CEL rule refuses it.
            logging["spec"]["aggregator"] = json!({"bufferVolume": {}});
        }
        let crds = CrdValidation::new().unwrap_or_else(|e| panic!("{e}"));
        let violations = base
            .iter()
            .flat_map(|d| crds.violations(d))
            .collect::<Vec<_>>();
        assert!(
            violations
                .iter()
                .any(|v| v.contains("set exactly one of persistentVolumeClaim or emptyDir")),
            "{violations:?}"
        );
    }

    #[test]
    fn reconcile_counts_are_read_from_the_operators_own_metrics_text() {
        let metrics = sluice::controller::metrics::Metrics::new();
        for seconds in [0.2, 3.0, 12.0, 30.0] {
            metrics.reconcile_started("Logging");
            metrics.reconciled("Logging", "changed", Duration::from_secs_f64(seconds));
        }
        metrics.reconcile_started("Logging");
        let text = metrics.encode();
        assert_eq!(metric_sum(&text, "sluice_reconciles_total", &[]), 5.0);
        let (finished, slow, bound) = slow_reconciles(&text, 10.0);
        assert_eq!((finished, slow), (4.0, 2.0), "{text}");
        assert!((10.0..11.0).contains(&bound), "{bound}");
    }
}
