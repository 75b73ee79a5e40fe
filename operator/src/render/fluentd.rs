//! The fluentd aggregator configuration: a TLS forward input, dispatch by the tag the agents
//! routed each record with (one `relabel` per flow), then one `<label>` per flow holding the
//! global filters, its filters and outputs.
//! See docs/dataplane.md for how to read it and docs/routing.md for the routing contract.

use sha2::{Digest, Sha256};

use crate::api::{TlsMode, TlsVersion};
use crate::layout;
use crate::model::{FlowPlan, ObjectKey, Pipeline};

use super::ConfigFile;
use super::edge;
use super::escape::{comment_text, fluentd_string};
use super::filters::write_filters;
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
/// Label receiving fluentd's own log events (fluentd's `Fluent::Log::LOG_EVENT_LABEL`).
pub const FLUENT_LOG_LABEL: &str = "@FLUENT_LOG";

fn short_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..6])
}

fn key_text(key: &ObjectKey) -> String {
    key.to_string()
}

/// The fluentd label of a flow: stable across unrelated changes, so buffer paths and ids
/// stay put when other flows come and go.
pub fn flow_label(key: &ObjectKey) -> String {
    format!("@flow-{}", short_hash(&[&key_text(key)]))
}

/// Directory of the file buffer of one flow-output pair.
pub fn buffer_path(flow_label: &str, output: &ObjectKey) -> String {
    format!(
        "{}/{}-{}",
        layout::AGGREGATOR_BUFFER_DIR,
        flow_label.trim_start_matches('@'),
        short_hash(&[&key_text(output)])
    )
}

/// The dispatch of one flow: the agents tag each record a flow takes `sluice.<route>`
/// (docs/routing.md), and this hands those records to the flow's `<label>`. fluentd caches
/// which `<match>` a tag goes to, so a record's cost does not grow with the number of flows,
/// and nothing here runs per record or polls.
fn write_dispatch(w: &mut Writer, key: Option<&ObjectKey>, route: &str, label: &str) {
    if let Some(key) = key {
        w.comment(&comment_text(&key_text(key)));
    }
    w.open("match", Some(&edge::route_tag(route)));
    w.param("@type", "relabel");
    w.param("@label", label);
    w.close("match");
}

/// Writes a flow's `<label>`; returns the buffer paths of its outputs.
fn write_flow_label(
    w: &mut Writer,
    pipeline: &Pipeline,
    flow: &FlowPlan,
    label: &str,
) -> Vec<String> {
    let mut buffers = Vec::new();
    w.comment(&comment_text(&key_text(&flow.key)));
    w.open("label", Some(label));
    // Global filters run on each flow's copy, before its own filters, rather than in front
    // of the router: routing must see the metadata as the agent attached it (a global
    // `dedot` would otherwise hide every dotted pod label from the selectors). A record a
    // global filter drops is dropped in every flow and in the default flow alike.
    write_filters(w, &pipeline.spec.global_filters);
    write_filters(w, &flow.filters);
    let outputs: Vec<_> = flow
        .outputs
        .iter()
        .filter_map(|key| pipeline.outputs.get(key))
        .collect();
    w.open("match", Some("**"));
    if outputs.is_empty() {
        w.param("@type", "null");
    } else {
        // Every output gets its own copy and its own buffer; `ignore_error` keeps an output
        // that rejects a chunk from stopping the outputs after it.
        w.param("@type", "copy");
        w.param("copy_mode", "shallow");
        for output in outputs {
            w.comment(&comment_text(&key_text(&output.key)));
            w.open("store", Some("ignore_error"));
            let path = buffer_path(label, &output.key);
            let id = path
                .trim_start_matches(layout::AGGREGATOR_BUFFER_DIR)
                .trim_start_matches('/');
            write_output(w, output, id, &path, flush_at_shutdown(pipeline));
            w.close("store");
            buffers.push(path);
        }
    }
    w.close("match");
    w.close("label");
    buffers
}

/// One flow's share of the configuration.
struct FlowText {
    route: String,
    label: String,
    buffers: Vec<String>,
}

fn flow_text(pipeline: &Pipeline, flow: &FlowPlan) -> FlowText {
    let label = flow_label(&flow.key);
    let mut route = Writer::new();
    write_dispatch(
        &mut route,
        Some(&flow.key),
        edge::flow_route(&label),
        &label,
    );
    let mut body = Writer::new();
    let buffers = write_flow_label(&mut body, pipeline, flow, &label);
    FlowText {
        route: route.finish(),
        label: body.finish(),
        buffers,
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
    w.param("rpc_endpoint", "127.0.0.1:24444");
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

/// Writes the `@ERROR` label; returns the buffer path of the error output, if any.
fn write_error_label(w: &mut Writer, pipeline: &Pipeline) -> Option<String> {
    let mut buffer = None;
    w.open("label", Some(ERROR_LABEL));
    w.open("match", Some("**"));
    match pipeline
        .error_output
        .as_ref()
        .and_then(|key| pipeline.outputs.get(key))
    {
        Some(output) => {
            w.comment(&comment_text(&key_text(&output.key)));
            let path = buffer_path("@sluice-error", &output.key);
            let id = path
                .trim_start_matches(layout::AGGREGATOR_BUFFER_DIR)
                .trim_start_matches('/');
            write_output(w, output, id, &path, flush_at_shutdown(pipeline));
            buffer = Some(path);
        }
        None => w.param("@type", "null"),
    }
    w.close("match");
    w.close("label");
    buffer
}

/// Largest slot we write: a Secret holds at most 1 MiB, and its keys and the manifest need
/// room too.
pub const SLOT_BUDGET: usize = 900 * 1024;

/// The slot (1..=`layout::AGGREGATOR_CONFIG_SLOTS`) of a flow: from its key alone, so adding,
/// editing or removing a flow rewrites its own slot and no other.
pub fn config_slot(key: &ObjectKey) -> usize {
    let digest = Sha256::digest(key_text(key).as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let slots = layout::AGGREGATOR_CONFIG_SLOTS as u64;
    usize::try_from(u64::from_be_bytes(first) % slots).unwrap_or(0) + 1
}

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
    /// Flows left out because their slot is full.
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

/// [`aggregator`] with an explicit slot budget (tests use small ones).
pub fn aggregator_with_budget(pipeline: &Pipeline, budget: usize) -> AggregatorFiles {
    let mut header = Writer::new();
    write_header(&mut header, pipeline);
    let header = header.finish();

    let mut slots: Vec<String> = vec![String::new(); layout::AGGREGATOR_CONFIG_SLOTS];
    let mut full = [false; layout::AGGREGATOR_CONFIG_SLOTS];
    let mut overflowed = Vec::new();
    let mut buffers = Vec::new();
    // In key order, so which flows a full slot leaves out never depends on the order
    // objects arrived in: the last ones by key.
    let mut flows: Vec<&FlowPlan> = pipeline.flows.iter().collect();
    flows.sort_by(|a, b| a.key.cmp(&b.key));
    for flow in flows {
        let index = config_slot(&flow.key) - 1;
        let text = flow_text(pipeline, flow);
        let (Some(slot), Some(full)) = (slots.get_mut(index), full.get_mut(index)) else {
            continue;
        };
        if *full || slot.len() + text.route.len() + text.label.len() > budget {
            *full = true;
            overflowed.push(flow.key.clone());
            continue;
        }
        slot.push_str(&text.route);
        slot.push_str(&text.label);
        buffers.extend(text.buffers);
    }

    let mut main = Writer::new();
    main.block(&header);
    main.blank();
    main.comment(
        "Flows: each slot holds, per flow, its dispatch (agents tag each record for the flow \
         that takes it, sluice.<route>; docs/routing.md) and its <label>. Paths are relative \
         to this file: fluentd resolves @include against the including file's directory.",
    );
    for slot in 1..=layout::AGGREGATOR_CONFIG_SLOTS {
        main.line(&format!("@include {}", slot_file(slot)));
    }
    if let Some(default) = &pipeline.default_flow {
        main.comment("The default flow: records of watched namespaces no flow took");
        write_dispatch(&mut main, None, edge::DEFAULT_ROUTE, DEFAULT_FLOW_LABEL);
        main.blank();
        buffers.extend(write_flow_label(
            &mut main,
            pipeline,
            default,
            DEFAULT_FLOW_LABEL,
        ));
    }
    main.comment(
        "A route this revision does not dispatch (agents still tagging for a flow just \
         removed): to the error output rather than dropped unseen",
    );
    main.open("match", Some(&format!("{}**", edge::TAG_PREFIX)));
    main.param("@type", "relabel");
    main.param("@label", ERROR_LABEL);
    main.close("match");
    main.comment("Any other tag is not routed");
    main.open("match", Some("**"));
    main.param("@type", "null");
    main.close("match");
    main.blank();
    buffers.extend(write_error_label(&mut main, pipeline));
    buffers.sort();
    buffers.dedup();

    let slots = slots
        .into_iter()
        .enumerate()
        .map(|(index, content)| {
            let slot = index + 1;
            ConfigFile {
                name: slot_file(slot),
                content: if content.is_empty() {
                    format!("# Slot {slot}: no flows.\n")
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
    let label = "@flow-example";
    let path = buffer_path(label, &output.key);
    w.open("match", Some("**"));
    write_output(&mut w, output, "example", &path, false);
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
