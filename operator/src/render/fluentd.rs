//! The fluentd aggregator configuration: a TLS forward input, dispatch by the tag the agents
//! routed each record with, one `<label>` per config slot holding its flows' filters and the
//! matches handing their records on, and one `<label>` per output instance, shared by every
//! flow that sends to it.
//! See docs/dataplane.md for how to read it and docs/routing.md for the routing contract.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use sha2::{Digest, Sha256};

use crate::api::{TlsMode, TlsVersion};
use crate::layout;
use crate::model::instances::{OutputInstance, OutputInstances, Sharing};
use crate::model::{FlowPlan, ObjectKey, Pipeline};

use super::ConfigFile;
use super::edge;
use super::escape::{comment_text, fluentd_string, ruby_regex_literal};
use super::filters::{write_filters, write_filters_matching};
use super::outputs::write_output;
use super::writer::Writer;

/// Label of the default flow.
pub const DEFAULT_FLOW_LABEL: &str = "@sluice-default-flow";
/// File holding the client certificate check, next to the main file.
pub const CERT_VERIFIER_FILE: &str = "cert-verifier.rb";
/// Longest time one regex match may take in the aggregator, in seconds. Tenant patterns
/// (grep, parser expressions) run on the worker every tenant shares; a backtracking pattern
/// must not stall it. Ruby >= 3.2 raises `Regexp::TimeoutError` once a match runs longer.
pub const REGEXP_TIMEOUT_SECONDS: f64 = 1.0;
/// Label receiving the records an output gave up on (fluentd's error stream), which goes to
/// the Logging's error output.
pub const ERROR_LABEL: &str = "@ERROR";
/// Label holding the Logging's error output. Sluice's own hand-offs (a route this revision
/// does not dispatch) go here, never to [`ERROR_LABEL`]: fluentd configures `<label @ERROR>`
/// after every other label (`RootAgent#configure`, 1.17 to 1.19), so a `@label @ERROR` inside
/// another label fails the whole configuration with "@ERROR label not found".
pub const ERROR_OUTPUT_LABEL: &str = "@sluice-error";
/// Label receiving fluentd's own log events (fluentd's `Fluent::Log::LOG_EVENT_LABEL`).
pub const FLUENT_LOG_LABEL: &str = "@FLUENT_LOG";
/// Prefix of output instance labels, `@id`s and buffer directories.
pub const INSTANCE_PREFIX: &str = "out-";

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().into()
}

fn short_hash(parts: &[&str]) -> String {
    hex::encode(&digest(parts)[..6])
}

fn key_text(key: &ObjectKey) -> String {
    key.to_string()
}

/// The fluentd label of a flow: stable across unrelated changes. The agents tag the flow's
/// records with it (`sluice.flow-<hash>`), and its hash picks the flow's config slot.
pub fn flow_label(key: &ObjectKey) -> String {
    let mut known = FLOW_LABELS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(label) = known.get(key) {
        return label.clone();
    }
    let label = computed_flow_label(key);
    if known.len() >= FLOW_LABELS_KEPT {
        known.clear();
    }
    known.insert(key.clone(), label.clone());
    label
}

/// Flow labels computed so far, by key: a reconcile asks for each flow's label several times
/// (its route, its slot, the routing gate, the data plane's bookkeeping), and the hash was a
/// tenth of the operator's CPU at 10,000 flows. The label is a function of the key alone,
/// so a kept one can never be out of date.
static FLOW_LABELS: LazyLock<Mutex<HashMap<ObjectKey, String>>> = LazyLock::new(Mutex::default);
/// Labels kept at most (about 100 bytes each); all are forgotten when a new one would pass it,
/// so keys of flows long deleted do not pile up.
const FLOW_LABELS_KEPT: usize = 100_000;

fn computed_flow_label(key: &ObjectKey) -> String {
    format!("@flow-{}", short_hash(&[&key_text(key)]))
}

/// The fluentd label of an output instance, named by its lead output and whose flows it
/// serves, so its buffer stays put while flows and equal outputs come and go.
pub fn instance_label(instance: &OutputInstance) -> String {
    let sharing = match &instance.sharing {
        Sharing::Admin => "admin".to_owned(),
        Sharing::Namespace(namespace) => format!("namespace {namespace}"),
    };
    format!(
        "@{INSTANCE_PREFIX}{}",
        short_hash(&["output instance", &sharing, &key_text(instance.lead())])
    )
}

/// The `@id` (also the buffer directory's name) of a label's output.
pub fn plugin_id(label: &str) -> &str {
    label.trim_start_matches('@')
}

/// Directory of an output's file buffer.
pub fn buffer_path(id: &str) -> String {
    format!("{}/{id}", layout::AGGREGATOR_BUFFER_DIR)
}

/// The slot (1..=`layout::AGGREGATOR_CONFIG_SLOTS`) of a label, from the first byte of its
/// hash: a flow's slot is also where its tag leads (the top-level dispatch matches on that
/// byte), and nothing but the key decides it.
fn slot_of_hash(hash_hex: &str) -> usize {
    let first = hash_hex
        .get(..2)
        .and_then(|byte| u8::from_str_radix(byte, 16).ok())
        .unwrap_or(0);
    usize::from(first) * layout::AGGREGATOR_CONFIG_SLOTS / 256 + 1
}

fn label_hash(label: &str) -> &str {
    label.rsplit('-').next().unwrap_or_default()
}

/// The slot (1..=`layout::AGGREGATOR_CONFIG_SLOTS`) of a flow: from its key alone, so
/// adding, editing or removing a flow rewrites its own slot and no other.
pub fn config_slot(key: &ObjectKey) -> usize {
    label_slot(&flow_label(key))
}

/// The slot of a flow with fluentd label `label` ([`config_slot`] of its key).
pub fn label_slot(label: &str) -> usize {
    slot_of_hash(label_hash(label))
}

/// The slot holding an output instance's label.
pub fn instance_slot(label: &str) -> usize {
    slot_of_hash(label_hash(label))
}

/// The label of slot `slot`, which receives the records of its flows.
pub fn slot_label(slot: usize) -> String {
    format!("@sluice-slot-{slot:02}")
}

/// A tag pattern (a fluentd `/regex/`) matching exactly the flow routes whose hash starts
/// with a byte of slot `slot`: the top-level dispatch.
fn slot_pattern(slot: usize) -> String {
    let slots = layout::AGGREGATOR_CONFIG_SLOTS;
    let bytes = (0..=255usize).filter(|byte| byte * slots / 256 + 1 == slot);
    // Grouped by first hex digit, each with the class of its second digits, written as
    // ranges within `0-9` and `a-f`.
    let mut prefixes: Vec<(usize, Vec<usize>)> = Vec::new();
    for byte in bytes {
        let (high, low) = (byte / 16, byte % 16);
        match prefixes.last_mut() {
            Some((last, lows)) if *last == high => lows.push(low),
            _ => prefixes.push((high, vec![low])),
        }
    }
    let hex = |digit: usize| char::from_digit(u32::try_from(digit).unwrap_or(0), 16).unwrap_or('0');
    let alternatives: Vec<String> = prefixes
        .into_iter()
        .map(|(high, lows)| {
            let mut class = String::new();
            let mut runs: Vec<(usize, usize)> = Vec::new();
            for low in lows {
                match runs.last_mut() {
                    // A run never crosses from `9` to `a`: they are not adjacent characters.
                    Some((_, end)) if *end + 1 == low && low != 10 => *end = low,
                    _ => runs.push((low, low)),
                }
            }
            for (start, end) in &runs {
                class.push(hex(*start));
                if end > start {
                    if *end > start + 1 {
                        class.push('-');
                    }
                    class.push(hex(*end));
                }
            }
            if runs.len() == 1 && runs[0].0 == runs[0].1 {
                format!("{}{class}", hex(high))
            } else {
                format!("{}[{class}]", hex(high))
            }
        })
        .collect();
    let prefix = if alternatives.len() == 1 {
        alternatives.concat()
    } else {
        format!("(?:{})", alternatives.join("|"))
    };
    format!(
        "/{}{prefix}[0-9a-f]{{10}}/",
        ruby_regex_literal(&edge::route_tag("flow-"))
    )
}

/// A tag pattern matching exactly the given flows' tags.
fn flows_pattern(routes: &[String]) -> String {
    match routes {
        [one] => edge::route_tag(one),
        _ => format!(
            "/{}(?:{})/",
            ruby_regex_literal(&edge::route_tag("flow-")),
            routes
                .iter()
                .map(|route| route.trim_start_matches("flow-"))
                .collect::<Vec<_>>()
                .join("|")
        ),
    }
}

/// Hands the records matched by `pattern` to the labels of `targets`: `relabel` for one,
/// `copy` for several (each its own copy; `ignore_error` keeps one whose buffer refuses a
/// chunk from stopping the ones after it), `null` for none.
fn write_handoff(w: &mut Writer, pattern: &str, targets: &[String]) {
    w.open("match", Some(pattern));
    match targets {
        [] => w.param("@type", "null"),
        [one] => {
            w.param("@type", "relabel");
            w.param("@label", one);
        }
        _ => {
            w.param("@type", "copy");
            w.param("copy_mode", "shallow");
            for target in targets {
                w.open("store", Some("ignore_error"));
                w.param("@type", "relabel");
                w.param("@label", target);
                w.close("store");
            }
        }
    }
    w.close("match");
}

fn instance_comment(instance: &OutputInstance) -> String {
    use std::fmt::Write as _;
    // Written into one string: an instance shared by a namespace's equal Outputs names each,
    // a thousand at 10,000 flows.
    let mut text = String::new();
    for (index, output) in instance.outputs.iter().enumerate() {
        if index > 0 {
            text.push_str(" and ");
        }
        let _ = write!(text, "{output}");
    }
    match &instance.sharing {
        Sharing::Admin => text.push_str(" for the admin flows"),
        Sharing::Namespace(namespace) => {
            let _ = write!(text, " for the Flows of namespace {namespace}");
        }
    }
    comment_text(&text)
}

/// The label of one output instance: its plugin with its buffer.
fn write_instance(w: &mut Writer, pipeline: &Pipeline, instance: &OutputInstance, label: &str) {
    let Some(output) = pipeline.outputs.get(instance.lead()) else {
        return;
    };
    w.comment(&instance_comment(instance));
    w.open("label", Some(label));
    w.open("match", Some("**"));
    let id = plugin_id(label);
    write_output(w, output, id, &buffer_path(id), flush_at_shutdown(pipeline));
    w.close("match");
    w.close("label");
}

/// One flow's share of its slot: its filters, and which instances its records go to.
struct FlowText {
    /// The flow named in a comment line, before the hand-off its tag is part of.
    comment: String,
    route: String,
    filters: String,
    targets: Vec<usize>,
}

fn flow_text(flow: &FlowPlan, targets: Vec<usize>) -> FlowText {
    let route = edge::flow_route(flow.label()).to_owned();
    let mut filters = Writer::at_depth(1);
    if !flow.filters.is_empty() {
        filters.comment(&comment_text(&key_text(&flow.key)));
        write_filters_matching(&mut filters, &edge::route_tag(&route), &flow.filters);
    }
    FlowText {
        comment: comment_text(&key_text(&flow.key)),
        route,
        filters: filters.finish(),
        targets,
    }
}

/// Whether output buffers must be flushed when fluentd stops: their volume is an emptyDir,
/// gone with the pod.
fn flush_at_shutdown(pipeline: &Pipeline) -> bool {
    pipeline
        .spec
        .aggregator
        .as_ref()
        .and_then(|a| a.buffer_volume.as_ref())
        .is_some_and(|volume| volume.empty_dir.is_some())
}

fn tls_version(version: TlsVersion) -> &'static str {
    match version {
        TlsVersion::Tls12 => "TLS1_2",
        TlsVersion::Tls13 => "TLS1_3",
    }
}

/// The Ruby file fluentd's `-r` loads in the supervisor and, through the same command line,
/// in every worker (docs/dataplane.md). `Regexp.timeout` is process-wide; an image with a
/// Ruby older than 3.2 has no such setting and starts without it instead of failing.
pub fn regexp_timeout_script() -> String {
    format!(
        "# Written by Sluice: bounds every regex match of this process (docs/dataplane.md).\n\
         Regexp.timeout = {REGEXP_TIMEOUT_SECONDS:?} if Regexp.respond_to?(:timeout=)\n"
    )
}

/// The Ruby file `cert_verifier` loads. It ANDs OpenSSL's own verdict (`ok`) and checks
/// the common name of the leaf only (dataplane.md §2.2): a self-signed certificate with an
/// allowed name is still refused.
pub fn cert_verifier(pipeline: &Pipeline) -> String {
    let tls = pipeline.spec.tls_or_default();
    // Ruby single-quoted literals: only `\\` and `\'` are escapes, nothing is interpolated.
    let ruby_single = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    let allowed = match &tls.allowed_client_names {
        Some(pattern) => format!("Regexp.new('\\A(?:' + {} + ')\\z')", ruby_single(pattern)),
        None => format!(
            "Regexp.new('\\A' + Regexp.escape({}) + '\\z')",
            ruby_single(tls.client_common_name.as_deref().unwrap_or("fluent-bit"))
        ),
    };
    format!(
        "# Rendered by Sluice. Accept a client only if OpenSSL verified its chain and the\n\
         # leaf certificate's common name fully matches the Logging's allowed names.\n\
         allowed = {allowed}\n\
         Proc.new do |ok, ctx|\n  \
           next false unless ok\n  \
           next true unless ctx.error_depth == 0\n  \
           cn = ctx.current_cert.subject.to_a.find {{ |entry| entry[0] == 'CN' }}&.[](1)\n  \
           !cn.nil? && allowed.match?(cn)\n\
         end\n"
    )
}

fn write_header(w: &mut Writer, pipeline: &Pipeline) {
    let spec = &pipeline.spec;
    let tls = spec.tls_or_default();
    let aggregator = spec.aggregator.clone().unwrap_or_default();
    w.comment(&format!(
        "Rendered by Sluice for Logging {}. Generated; edits are overwritten.",
        comment_text(&pipeline.logging)
    ));
    w.open("system", None);
    w.param(
        "workers",
        &aggregator.workers.unwrap_or(1).clamp(1, 64).to_string(),
    );
    w.param("rpc_endpoint", layout::AGGREGATOR_RPC_ENDPOINT);
    // fluentd otherwise logs the whole configuration at every start and reload: megabytes
    // at thousands of flows, in the supervisor and again in every worker.
    w.param("suppress_config_dump", "true");
    w.close("system");
    w.blank();

    w.open("source", None);
    w.param("@type", "forward");
    w.param("@id", "sluice-forward");
    w.param("bind", "0.0.0.0");
    w.param(
        "port",
        &aggregator
            .port
            .unwrap_or(layout::DEFAULT_AGGREGATOR_PORT)
            .to_string(),
    );
    if tls.mode.unwrap_or_default() != TlsMode::Disabled {
        let tls_file = |key: &str| fluentd_string(&format!("{}/{key}", layout::AGGREGATOR_TLS_DIR));
        w.open("transport", Some("tls"));
        w.param("ca_path", &tls_file(layout::CA_CERT_KEY));
        w.param("cert_path", &tls_file(layout::TLS_CERT_KEY));
        w.param("private_key_path", &tls_file(layout::TLS_KEY_KEY));
        w.param("client_cert_auth", "true");
        w.param_str(
            "cert_verifier",
            &format!(
                "{}/{}",
                layout::RELOAD_SHARED_DIR,
                cert_verifier_file(pipeline).name
            ),
        );
        w.param(
            "min_version",
            tls_version(tls.min_version.unwrap_or(TlsVersion::Tls12)),
        );
        w.param(
            "max_version",
            tls_version(tls.max_version.unwrap_or(TlsVersion::Tls13)),
        );
        w.close("transport");
    }
    w.open("security", None);
    // Distinct from the agents' self_hostname (their node name): fluentd rejects a peer
    // announcing its own hostname.
    w.param("self_hostname", "\"#{Socket.gethostname}\"");
    w.param(
        "shared_key",
        &format!("\"#{{ENV['{}']}}\"", layout::SHARED_KEY_ENV),
    );
    w.close("security");
    w.close("source");
    w.blank();

    w.open("source", None);
    w.param("@type", "prometheus");
    w.param("@id", "sluice-metrics");
    w.param("bind", "0.0.0.0");
    w.param("port", &layout::AGGREGATOR_METRICS_PORT.to_string());
    w.param("metrics_path", "/metrics");
    w.close("source");
    w.open("source", None);
    w.param("@type", "prometheus_output_monitor");
    w.param("@id", "sluice-output-metrics");
    w.close("source");
    w.blank();

    // fluentd's own events (`fluent.*`) never reach the dispatch below or a tenant's
    // output: the logger already prints them on the pod's stdout, so the label discards the
    // event copies (without it fluentd would route them like records, and warns about it).
    w.open("label", Some(FLUENT_LOG_LABEL));
    w.open("match", Some("fluent.**"));
    w.param("@type", "null");
    w.close("match");
    w.close("label");
}

/// Writes the `@ERROR` label, which hands fluentd's error stream to the error output's label,
/// and that label; returns the buffer path of the error output, if any.
fn write_error_label(w: &mut Writer, pipeline: &Pipeline) -> Option<String> {
    let mut buffer = None;
    w.open("label", Some(ERROR_LABEL));
    w.open("match", Some("**"));
    w.param("@type", "relabel");
    w.param("@label", ERROR_OUTPUT_LABEL);
    w.close("match");
    w.close("label");
    w.open("label", Some(ERROR_OUTPUT_LABEL));
    w.open("match", Some("**"));
    match pipeline
        .error_output
        .as_ref()
        .and_then(|key| pipeline.outputs.get(key))
    {
        Some(output) => {
            w.comment(&comment_text(&key_text(&output.key)));
            let id = format!("sluice-error-{}", short_hash(&[&key_text(&output.key)]));
            let path = buffer_path(&id);
            write_output(w, output, &id, &path, flush_at_shutdown(pipeline));
            buffer = Some(path);
        }
        None => w.param("@type", "null"),
    }
    w.close("match");
    w.close("label");
    buffer
}

/// The default flow's label: the global filters, its filters, then its instances.
fn write_default_flow(
    w: &mut Writer,
    pipeline: &Pipeline,
    default: &FlowPlan,
    instances: &OutputInstances,
    labels: &[String],
    placed: &[bool],
) {
    w.comment(&comment_text(&key_text(&default.key)));
    w.open("label", Some(DEFAULT_FLOW_LABEL));
    write_filters(w, &pipeline.spec.global_filters);
    write_filters(w, &default.filters);
    let targets: Vec<String> = instances
        .of_flow(default)
        .into_iter()
        .filter(|index| placed[*index])
        .map(|index| labels[index].clone())
        .collect();
    write_handoff(w, "**", &targets);
    w.close("label");
}

/// Largest slot we write: a Secret holds at most 1 MiB, and its keys and the manifest need
/// room too.
pub const SLOT_BUDGET: usize = 900 * 1024;

/// File name of slot `slot` inside the config bundle.
pub fn slot_file(slot: usize) -> String {
    format!("slot-{slot:02}.conf")
}

/// The aggregator's configuration files, as the config bundle carries them
/// (docs/architecture.md, "Config reload").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregatorFiles {
    /// `fluent.conf` and `regexp-timeout.rb`: installed per revision; `fluent.conf` includes
    /// the slots by relative path.
    pub main: Vec<ConfigFile>,
    /// Files the configuration names by absolute path under `layout::RELOAD_SHARED_DIR`,
    /// content-addressed (the client certificate verifier).
    pub shared: Vec<ConfigFile>,
    /// One file per slot, `slot-01.conf` to `slot-32.conf`, in order; empty slots too.
    pub slots: Vec<ConfigFile>,
    /// Flows left out because their slot (or the slot of an output instance they send to)
    /// is full.
    pub overflowed: Vec<ObjectKey>,
    /// Every output buffer path of this configuration, sorted: the reloader drains those a
    /// new revision drops before it restarts fluentd on it (their plugins are gone after).
    pub buffers: Vec<String>,
}

impl AggregatorFiles {
    /// Every file, main first.
    pub fn all(&self) -> impl Iterator<Item = &ConfigFile> {
        self.main.iter().chain(&self.shared).chain(&self.slots)
    }

    /// The main `fluent.conf`.
    pub fn main_config(&self) -> &str {
        self.main
            .iter()
            .find(|f| f.name == layout::AGGREGATOR_CONFIG_FILE)
            .map(|f| f.content.as_str())
            .unwrap_or_default()
    }
}

/// The aggregator configuration: a main file and [`layout::AGGREGATOR_CONFIG_SLOTS`] slots.
pub fn aggregator(pipeline: &Pipeline) -> AggregatorFiles {
    aggregator_with_budget(pipeline, SLOT_BUDGET)
}

/// What one slot holds while it is filled.
#[derive(Default)]
struct Slot {
    /// The flows placed, in key order.
    flows: Vec<FlowText>,
    /// Output instance labels, rendered.
    instances: String,
    /// Bytes of what is placed so far, the hand-offs included.
    size: usize,
    /// Which instance sets already have a hand-off here.
    handoffs: Vec<Vec<usize>>,
    full: bool,
}

/// Bytes a flow adds to its slot: its filters, its comment line and tag alternative in the
/// hand-off of its instances, and the hand-off itself when it is the first flow sending to
/// those instances there.
fn flow_cost(flow: &FlowText, labels: &[String], first: bool) -> usize {
    // Indent, `# `, the comment and a line end; `|` and 12 hex digits.
    let own = flow.filters.len() + 2 + 2 + flow.comment.len() + 1 + 13;
    if first {
        let mut w = Writer::at_depth(1);
        let names: Vec<String> = flow.targets.iter().map(|i| labels[*i].clone()).collect();
        let two = [
            "flow-000000000000".to_owned(),
            "flow-000000000000".to_owned(),
        ];
        write_handoff(&mut w, &flows_pattern(&two), &names);
        own + w.finish().len()
    } else {
        own
    }
}

fn write_slot(w: &mut Writer, pipeline: &Pipeline, number: usize, slot: &Slot, labels: &[String]) {
    if !slot.flows.is_empty() {
        w.comment(&format!(
            "The flows of slot {number} (tags matching {}), then the output instances placed here",
            slot_pattern(number)
        ));
        w.open("label", Some(&slot_label(number)));
        // Global filters run on each flow's copy, before its own filters, rather than in
        // front of the agents' routing: routing must see the metadata as the agent attached
        // it (a global `dedot` would otherwise hide every dotted pod label from the
        // selectors). A record a global filter drops is dropped in every flow alike.
        write_filters(w, &pipeline.spec.global_filters);
        for flow in &slot.flows {
            w.raw(&flow.filters);
        }
        // One hand-off per set of instances: flows sending to the same outputs share it, so
        // a flow costs fluentd a tag alternative and its own filters, no plugin of its own.
        let mut groups: Vec<(&Vec<usize>, Vec<&FlowText>)> = Vec::new();
        for flow in &slot.flows {
            match groups
                .iter_mut()
                .find(|(targets, _)| **targets == flow.targets)
            {
                Some((_, members)) => members.push(flow),
                None => groups.push((&flow.targets, vec![flow])),
            }
        }
        for (targets, members) in groups {
            for flow in &members {
                w.comment(&flow.comment);
            }
            let routes: Vec<String> = members.iter().map(|flow| flow.route.clone()).collect();
            let names: Vec<String> = targets.iter().map(|i| labels[*i].clone()).collect();
            write_handoff(w, &flows_pattern(&routes), &names);
        }
        // Tags of flows this configuration does not hold (agents still tagging for a flow
        // just removed): to the error output rather than dropped unseen.
        w.open("match", Some("**"));
        w.param("@type", "relabel");
        w.param("@label", ERROR_OUTPUT_LABEL);
        w.close("match");
        w.close("label");
    }
    w.raw(&slot.instances);
}

/// [`aggregator`] with an explicit slot budget (tests use small ones).
pub fn aggregator_with_budget(pipeline: &Pipeline, budget: usize) -> AggregatorFiles {
    let mut header = Writer::new();
    write_header(&mut header, pipeline);
    let header = header.finish();

    let instances = OutputInstances::of(pipeline);
    let labels: Vec<String> = instances.instances.iter().map(instance_label).collect();
    let mut slots: Vec<Slot> = (0..layout::AGGREGATOR_CONFIG_SLOTS)
        .map(|_| Slot::default())
        .collect();
    // Output instances first: flows need them. In label order, so which ones a full slot
    // leaves out never depends on the order objects arrived in.
    let mut order: Vec<usize> = (0..instances.instances.len()).collect();
    order.sort_by(|a, b| labels[*a].cmp(&labels[*b]));
    let mut placed = vec![false; instances.instances.len()];
    for index in order {
        let label = &labels[index];
        let mut text = Writer::new();
        write_instance(&mut text, pipeline, &instances.instances[index], label);
        let text = text.finish();
        let Some(slot) = slots.get_mut(instance_slot(label) - 1) else {
            continue;
        };
        if slot.size + text.len() <= budget {
            slot.size += text.len();
            slot.instances.push_str(&text);
            placed[index] = true;
        }
    }
    // A flow sending to an instance no slot could hold is left out whole (the default flow,
    // which cannot be left out, skips it).
    let mut overflowed = Vec::new();
    // What a slot's label costs once it holds a flow: its comment, directives, catch-all
    // and the global filters.
    let slot_overhead = {
        let mut w = Writer::at_depth(1);
        write_filters(&mut w, &pipeline.spec.global_filters);
        w.finish().len() + 400
    };
    // In key order, so which flows a full slot leaves out never depends on the order
    // objects arrived in: the last ones by key.
    let mut flows: Vec<&FlowPlan> = pipeline.flows.iter().collect();
    flows.sort_by(|a, b| a.key.cmp(&b.key));
    for flow in flows {
        let targets = instances.of_flow(flow);
        if targets.is_empty() {
            // Nothing to send to: its records end at its slot's catch-all.
            continue;
        }
        if targets.iter().any(|index| !placed[*index]) {
            overflowed.push(flow.key.clone());
            continue;
        }
        let text = flow_text(flow, targets);
        let Some(slot) = slots.get_mut(label_slot(flow.label()) - 1) else {
            continue;
        };
        let first = !slot.handoffs.contains(&text.targets);
        let mut cost = flow_cost(&text, &labels, first);
        if slot.flows.is_empty() {
            cost += slot_overhead;
        }
        if slot.full || slot.size + cost > budget {
            slot.full = true;
            overflowed.push(flow.key.clone());
            continue;
        }
        slot.size += cost;
        if first {
            slot.handoffs.push(text.targets.clone());
        }
        slot.flows.push(text);
    }

    let mut main = Writer::new();
    main.block(&header);
    main.blank();
    main.comment(
        "Dispatch: agents tag each record for the flow that takes it (sluice.<route>; \
         docs/routing.md); the first byte of the route's hash names the slot holding the flow.",
    );
    for (index, slot) in slots.iter().enumerate() {
        if !slot.flows.is_empty() {
            main.open("match", Some(&slot_pattern(index + 1)));
            main.param("@type", "relabel");
            main.param("@label", &slot_label(index + 1));
            main.close("match");
        }
    }
    if pipeline.default_flow.is_some() {
        main.comment("The default flow: records of watched namespaces no flow took");
        main.open("match", Some(&edge::route_tag(edge::DEFAULT_ROUTE)));
        main.param("@type", "relabel");
        main.param("@label", DEFAULT_FLOW_LABEL);
        main.close("match");
    }
    main.comment(
        "A route this revision does not dispatch (agents still tagging for a flow just \
         removed): to the error output rather than dropped unseen",
    );
    main.open("match", Some(&format!("{}**", edge::TAG_PREFIX)));
    main.param("@type", "relabel");
    main.param("@label", ERROR_OUTPUT_LABEL);
    main.close("match");
    main.comment("Any other tag is not routed");
    main.open("match", Some("**"));
    main.param("@type", "null");
    main.close("match");
    main.blank();
    main.comment(
        "Each slot holds the label of its flows and the output instances placed there. \
         Paths are relative to this file: fluentd resolves @include against the including \
         file's directory.",
    );
    for slot in 1..=layout::AGGREGATOR_CONFIG_SLOTS {
        main.line(&format!("@include {}", slot_file(slot)));
    }
    if let Some(default) = &pipeline.default_flow {
        main.blank();
        write_default_flow(&mut main, pipeline, default, &instances, &labels, &placed);
    }
    main.blank();
    // Every buffer of this revision: the reloader drains those the next one drops.
    let mut buffers: Vec<String> = labels
        .iter()
        .zip(&placed)
        .filter(|(_, placed)| **placed)
        .map(|(label, _)| buffer_path(plugin_id(label)))
        .collect();
    buffers.extend(write_error_label(&mut main, pipeline));
    buffers.sort();
    buffers.dedup();

    let slots = slots
        .iter()
        .enumerate()
        .map(|(index, slot)| {
            let number = index + 1;
            let mut w = Writer::new();
            write_slot(&mut w, pipeline, number, slot, &labels);
            let content = w.finish();
            ConfigFile {
                name: slot_file(number),
                content: if content.is_empty() {
                    format!("# Slot {number}: no flows.\n")
                } else {
                    content
                },
            }
        })
        .collect();
    AggregatorFiles {
        main: vec![
            ConfigFile {
                name: layout::AGGREGATOR_CONFIG_FILE.to_owned(),
                content: main.finish(),
            },
            ConfigFile {
                name: layout::AGGREGATOR_REGEXP_TIMEOUT_FILE.to_owned(),
                content: regexp_timeout_script(),
            },
        ],
        shared: vec![cert_verifier_file(pipeline)],
        slots,
        overflowed,
        buffers,
    }
}

/// The client certificate verifier, under its content-addressed name.
pub fn cert_verifier_file(pipeline: &Pipeline) -> ConfigFile {
    let content = cert_verifier(pipeline);
    ConfigFile {
        name: crate::bundle::content_addressed_name(CERT_VERIFIER_FILE, content.as_bytes()),
        content,
    }
}

/// Writes one output's directive body into a fresh writer; used by golden tests per kind.
pub fn output_snippet(output: &crate::model::OutputPlan) -> String {
    let mut w = Writer::new();
    w.open("match", Some("**"));
    write_output(
        &mut w,
        output,
        "example",
        &buffer_path("out-example"),
        false,
    );
    w.close("match");
    w.finish()
}

/// Writes filters into a fresh writer; used by golden tests per kind.
pub fn filters_snippet(filters: &[crate::api::Filter]) -> String {
    let mut w = Writer::new();
    write_filters(&mut w, filters);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OutputSpec;
    use crate::model::{Kind, OutputPlan};

    #[test]
    fn the_regexp_timeout_script_sets_a_global_bound_where_ruby_has_one() {
        assert_eq!(
            regexp_timeout_script(),
            "# Written by Sluice: bounds every regex match of this process (docs/dataplane.md).\n\
             Regexp.timeout = 1.0 if Regexp.respond_to?(:timeout=)\n"
        );
    }

    /// The top-level dispatch sends a flow's tag to the slot the flow's text is in, and to
    /// no other: each slot's pattern matches exactly the tags whose hash starts with one of
    /// its bytes.
    #[test]
    fn each_slot_pattern_takes_exactly_its_flows_tags() {
        let patterns: Vec<regex::Regex> = (1..=layout::AGGREGATOR_CONFIG_SLOTS)
            .map(|slot| {
                let pattern = slot_pattern(slot);
                let inner = pattern.trim_start_matches('/').trim_end_matches('/');
                regex::Regex::new(&format!(r"\A(?:{inner})\z")).unwrap()
            })
            .collect();
        for first in 0..=255u8 {
            let tag = format!("sluice.flow-{first:02x}0123456789");
            let takers: Vec<usize> = (0..patterns.len())
                .filter(|i| patterns[*i].is_match(&tag))
                .map(|i| i + 1)
                .collect();
            assert_eq!(takers, [slot_of_hash(&format!("{first:02x}"))], "{tag}");
        }
        for n in 0..200 {
            let key = ObjectKey::namespaced(Kind::Flow, "team", &format!("flow-{n}"));
            let tag = edge::route_tag(edge::flow_route(&flow_label(&key)));
            assert!(patterns[config_slot(&key) - 1].is_match(&tag), "{tag}");
        }
        assert!(!patterns.iter().any(|p| p.is_match("sluice.default")));
        assert_eq!(slot_pattern(8), r"/sluice\.flow-3[89a-f][0-9a-f]{10}/");
    }

    /// Labels served from the memo are the ones the key's hash gives, each key its own,
    /// however often and in whatever order they are asked for.
    #[test]
    fn a_flow_label_is_its_keys_own_when_asked_again() {
        let keys: Vec<ObjectKey> = (0..50)
            .flat_map(|n| {
                [
                    ObjectKey::namespaced(Kind::Flow, "team-a", &format!("flow-{n}")),
                    ObjectKey::namespaced(Kind::Flow, "team-b", &format!("flow-{n}")),
                    ObjectKey::cluster(Kind::ClusterFlow, &format!("flow-{n}")),
                ]
            })
            .collect();
        for round in 0..3 {
            for key in keys.iter().rev().skip(round) {
                assert_eq!(flow_label(key), computed_flow_label(key), "{key}");
            }
        }
        let distinct: std::collections::BTreeSet<String> = keys.iter().map(flow_label).collect();
        assert_eq!(distinct.len(), keys.len());
        assert_eq!(
            flow_label(&ObjectKey::namespaced(Kind::Flow, "team-a", "flow-0")),
            format!("@flow-{}", short_hash(&["Flow team-a/flow-0"]))
        );
    }

    #[test]
    fn file_output_stays_inside_the_buffer_volume() {
        let spec: OutputSpec =
            serde_json::from_value(serde_json::json!({"file": {"path": "/../../etc/./passwd"}}))
                .unwrap();
        let plan = OutputPlan {
            key: ObjectKey::namespaced(Kind::Output, "a", "f"),
            spec,
            secret_files: Default::default(),
        };
        let text = output_snippet(&plan);
        assert!(
            text.contains("path \"/buffers/files/a/f/_/_/etc/passwd\""),
            "{text}"
        );
    }
}
