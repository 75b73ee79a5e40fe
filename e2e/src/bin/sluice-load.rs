//! Load benchmark of the operator against the cluster `KUBECONFIG` points at
//! (operator/benches/README.md, "Operator at scale").
//!
//! It starts `sluice run` as a child process (so its memory is the operator's alone), creates
//! one Logging and N Flows with one Output each, and measures: time until the config Secrets
//! hold every flow and until every Flow's status is current, the latency of single edits
//! (observed through a watch on Sluice's Secrets, not by polling), how many Secret and status
//! writes each edit caused, and the operator's resident memory. It prints one table.
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
}

const LOGGING: &str = "sluice-load";
const CONTROL: &str = "sluice-load-system";
const LABEL: &str = "sluice-load";

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

/// What the Secret watch saw: every write to one of the Logging's Secrets, and their latest
/// decoded contents.
#[derive(Default)]
struct SecretLog {
    writes: Vec<(Instant, String)>,
    latest: BTreeMap<String, String>,
}

impl SecretLog {
    fn text_containing(&self, needle: &str) -> bool {
        self.latest.values().any(|text| text.contains(needle))
    }

    /// Flow `<label>` sections across the aggregator's config Secrets.
    fn aggregator_flows(&self) -> usize {
        self.latest
            .iter()
            .filter(|(name, _)| name.contains("aggregator-config"))
            .map(|(_, text)| text.matches("<label @flow-").count())
            .sum()
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

fn watch_secrets(client: Client, log: Arc<Mutex<SecretLog>>) {
    let api: Api<Secret> = Api::namespaced(client, CONTROL);
    let config =
        watcher::Config::default().labels(&format!("{}={LOGGING}", sluice::layout::LOGGING_LABEL));
    tokio::spawn(async move {
        let mut stream = watcher(api, config).applied_objects().boxed();
        let mut versions: BTreeMap<String, String> = BTreeMap::new();
        while let Ok(Some(secret)) = stream.try_next().await {
            let name = secret.name_any();
            let version = secret.resource_version().unwrap_or_default();
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            // A re-list replays every object; only a new resourceVersion is a write.
            if versions.insert(name.clone(), version.clone()) != Some(version) {
                log.writes.push((Instant::now(), name.clone()));
                log.latest.insert(name, secret_text(&secret));
            }
        }
    });
}

fn is_current(flow: &Flow) -> bool {
    let Some(status) = &flow.status else {
        return false;
    };
    status.observed_generation == flow.metadata.generation
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn watch_flows(client: Client, log: Arc<Mutex<FlowLog>>) {
    let api: Api<Flow> = Api::all(client);
    let config = watcher::Config::default().labels(&format!("{LABEL}=true"));
    tokio::spawn(async move {
        let mut stream = watcher(api, config).applied_objects().boxed();
        while let Ok(Some(flow)) = stream.try_next().await {
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

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let client = Client::try_default()
        .await
        .context("no cluster: set KUBECONFIG")?;
    install_crds(&client).await?;
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
            "tenantLimits": {"maxFlowOutputPairsPerNamespace": 100_000},
        },
    }));
    apply_documents(&client, &base).await?;

    let mut operator = match &args.operator {
        Some(binary) => Some(
            std::process::Command::new(binary)
                .args([
                    "run",
                    "--listen",
                    "127.0.0.1:0",
                    "--control-namespaces",
                    CONTROL,
                ])
                .env("SLUICE_LOG_FORMAT", "plain")
                .stdout(std::process::Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?,
        ),
        None => None,
    };
    let pid = operator.as_ref().map(std::process::Child::id);

    let secrets = Arc::new(Mutex::new(SecretLog::default()));
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
        let edited = Instant::now();
        apply_all(&client, vec![flow]).await?;
        let seen = until(
            &format!("edit {edit} in a config Secret"),
            Duration::from_secs(60),
            || {
                secrets
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .text_containing(&marker)
            },
        )
        .await?;
        latencies.push(seen - edited);
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
    if let Some(child) = operator.as_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(())
}
