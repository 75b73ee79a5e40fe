//! The Logging: control namespace, watched namespaces, default flow, error output, global
//! filters, and the aggregator and agent settings (from the Logging itself, a FluentdConfig
//! and its FluentbitAgents).

use crate::api::{
    AgentSpec, AggregatorSpec, BufferVolumeSpec, DefaultFlowSpec, EmptyDirBufferSpec,
    KubernetesMetadataSpec, Logging, LoggingSpec, PersistentBufferSpec, PodDisruptionBudgetSpec,
    PodScheduling, Resources, TenantLimits,
};
use crate::routing::Watched;

use super::fields::{At, Fields};
use super::filters::{self, FilterPlace};
use super::flows::Refs;
use super::report::Status;
use super::source::{Input, SourceKind};
use super::{Domain, to_json, try_label_selector};

/// The Sluice Logging and the report entries of every object it was made from.
pub struct LoggingConversion<'a> {
    pub logging: Logging,
    pub fields: Vec<Fields<'a>>,
}

/// logging-operator's default buffer volume per aggregator replica.
const INCUMBENT_BUFFER_VOLUME: &str = "20Gi";

/// Converts the domain's Logging (it must have one).
pub fn convert<'a>(
    domain: &Domain<'a>,
    refs: &Refs<'_, '_>,
    input: &Input,
) -> LoggingConversion<'a> {
    let Some(source) = domain.logging else {
        unreachable!("only domains with a Logging are converted to one")
    };
    let mut fields = Fields::new(source);
    let spec = At::spec(source);
    let mut logging = super::logging_spec(String::new());
    match spec.field("controlNamespace") {
        Some(at) => {
            logging.control_namespace = fields.string(&at).unwrap_or_default();
            fields.converted(&at, "spec.controlNamespace");
        }
        None => fields.error(&spec, "controlNamespace is required"),
    }
    watch(&mut fields, &spec, domain, input, &mut logging);
    if let Some(at) = spec.field("defaultFlow") {
        let mut default_flow = DefaultFlowSpec::default();
        if let Some(list) = at.field("filters") {
            default_flow.filters = filters::convert(
                &mut fields,
                &list,
                "spec.defaultFlow.filters",
                FilterPlace::Flow,
            );
        }
        if let Some(list) = at.field("globalOutputRefs") {
            default_flow.global_output_refs = refs.global(
                &mut fields,
                &list,
                "spec.defaultFlow.globalOutputRefs",
                true,
            );
        }
        if let Some(list) = at.field("outputRefs") {
            fields.not_needed(
                &list,
                "deprecated: logging-operator only reports it and sends nothing there",
            );
        }
        for key in ["flowLabel", "includeLabelInRouter"] {
            if let Some(label) = at.field(key) {
                fields.not_needed(
                    &label,
                    "the router's label of the flow: Sluice names flows itself",
                );
            }
        }
        fields.note(
            Status::Converted,
            &at,
            Some("spec.defaultFlow".to_owned()),
            "takes what no flow took, as before",
        );
        logging.default_flow = Some(default_flow);
    }
    if let Some(at) = spec.field("errorOutputRef") {
        let name = fields.string(&at).unwrap_or_default();
        match domain
            .cluster_output(&name)
            .and_then(|o| refs.names.get(&o.id))
        {
            Some(sluice) => {
                fields.converted(&at, format!("spec.errorOutputRef {sluice}"));
                logging.error_output_ref = Some(sluice.clone());
            }
            None if domain.cluster_output(&name).is_some() => fields.lost(
                &at,
                format!(
                    "ClusterOutput {name} was not converted: records outputs give up on are dropped"
                ),
            ),
            None => fields.not_needed(
                &at,
                "names no ClusterOutput of the Logging: logging-operator could not use it either",
            ),
        }
    }
    if let Some(list) = spec.field("globalFilters") {
        logging.global_filters = filters::convert(
            &mut fields,
            &list,
            "spec.globalFilters",
            FilterPlace::Global,
        );
    }
    if let Some(at) = spec.field("loggingRef") {
        fields.not_needed(&at, "Sluice objects name their Logging (loggingRef) by the Logging's name; the converted objects do where there are several");
    }
    superseded(&mut fields, &spec);

    let mut parts = Vec::new();
    // The aggregator: a FluentdConfig replaces the Logging's own spec.fluentd.
    let mut aggregator = AggregatorSpec::default();
    if let Some(config) = domain.fluentd_config {
        let mut config_fields = Fields::new(config);
        let config_spec = At::spec(config);
        fluentd(&mut config_fields, &config_spec, &mut aggregator);
        config_fields.sweep(&config_spec);
        parts.push(config_fields);
        if let Some(at) = spec.field("fluentd") {
            fields.not_needed(&at, format!("logging-operator uses {} instead", config.id));
        }
    } else if let Some(at) = spec.field("fluentd") {
        fluentd(&mut fields, &at, &mut aggregator);
    } else {
        let empty = At {
            node: &source.spec,
            path: "spec.fluentd".to_owned(),
            line: source.spec_line,
        };
        fluentd_defaults(&mut fields, &empty, &mut aggregator);
    }
    logging.aggregator = Some(aggregator);

    // The agent: the first FluentbitAgent (or the Logging's inline spec.fluentbit).
    let mut agent = AgentSpec::default();
    for (index, agent_source) in domain.agents.iter().enumerate() {
        let inline = agent_source.id.kind == SourceKind::Logging;
        if index > 0 {
            let message = "Sluice runs one agent DaemonSet per Logging; only the first FluentbitAgent's settings are converted (by name order)";
            if inline {
                if let Some(at) = spec.field("fluentbit") {
                    fields.lost(&at, message);
                }
            } else {
                let mut other = Fields::new(agent_source);
                other.about_object(Status::NotConverted, "spec", None, message);
                parts.push(other);
            }
            continue;
        }
        if inline {
            if let Some(at) = spec.field("fluentbit") {
                fields.note(
                    Status::Converted,
                    &at,
                    Some("spec.agent".to_owned()),
                    "deprecated inline agent settings",
                );
                fluentbit(&mut fields, &at, &mut agent);
            }
        } else {
            let mut agent_fields = Fields::new(agent_source);
            let agent_spec = At::spec(agent_source);
            fluentbit(&mut agent_fields, &agent_spec, &mut agent);
            if let Some(at) = agent_spec.field("loggingRef") {
                agent_fields.not_needed(&at, "it becomes the agent of the Logging it names");
            }
            agent_fields.sweep(&agent_spec);
            parts.push(agent_fields);
        }
    }
    if agent != AgentSpec::default() {
        logging.agent = Some(agent);
    }
    if domain.honours_pod_opt_out() {
        logging.tenant_limits = Some(TenantLimits {
            allow_pod_opt_out: Some(true),
            ..TenantLimits::default()
        });
        fields.about_object(Status::Converted, "(agent) fluentbit.io/exclude", Some("spec.tenantLimits.allowPodOptOut true".to_owned()), "logging-operator's agent skips pods annotated fluentbit.io/exclude: \"true\" (K8S-Logging.Exclude); Sluice does only when the Logging allows it, so it does here");
    }
    fields.sweep(&spec);
    let mut converted = Logging::new(&source.id.name, logging);
    converted.metadata.namespace = None;
    let mut all = vec![fields];
    all.extend(parts);
    LoggingConversion {
        logging: converted,
        fields: all,
    }
}

/// `watchNamespaces` and `watchNamespaceSelector`: logging-operator reads Flows and Outputs
/// of these namespaces only but collects every namespace's logs for ClusterFlows and the
/// default flow; Sluice collects only the watched namespaces at all.
fn watch(
    fields: &mut Fields<'_>,
    spec: &At<'_>,
    domain: &Domain<'_>,
    input: &Input,
    logging: &mut LoggingSpec,
) {
    let listed = spec.field("watchNamespaces");
    let selector = spec.field("watchNamespaceSelector");
    if listed.is_none() && selector.is_none() {
        return;
    }
    let cluster_wide = !domain.cluster_flows.is_empty() || spec.field("defaultFlow").is_some();
    let keep = domain.collects != Watched::All || !cluster_wide;
    if keep {
        if let Some(at) = &listed {
            logging.watch_namespaces = fields.strings(at);
            fields.converted(at, "spec.watchNamespaces");
        }
        if let Some(at) = &selector {
            match try_label_selector(at.node) {
                Ok(selector) => logging.watch_namespace_selector = Some(selector),
                Err(message) => fields.error(at, message),
            }
            let note = if input.namespaces.is_empty() {
                "the migration saw no Namespace objects, so its checks know none of the namespaces the selector picks"
            } else {
                ""
            };
            fields.converted_note(at, "spec.watchNamespaceSelector", note);
        }
        return;
    }
    if let Some(at) = &selector
        && let Err(message) = try_label_selector(at.node)
    {
        fields.error(at, message);
    }
    let why = "logging-operator reads Flows and Outputs of these namespaces only, but its ClusterFlows and default flow get every namespace's logs; Sluice collects the watched namespaces' logs only, so the Logging watches every namespace. Flows and Outputs outside these namespaces were not converted (they were not part of the Logging); any created later in other namespaces would be";
    for at in [listed, selector].into_iter().flatten() {
        fields.changed(&at, None, why);
    }
}

/// Logging fields whose job Sluice does itself, or that carry nothing.
fn superseded(fields: &mut Fields<'_>, spec: &At<'_>) {
    let checked = "Sluice checks every configuration with the data-plane binary before using it and leaves out only the invalid object (docs/architecture.md, \"Config reload\")";
    for (key, status, why) in [
        ("flowConfigCheckDisabled", Status::NotNeeded, checked),
        ("skipInvalidResources", Status::NotNeeded, checked),
        ("configCheck", Status::NotNeeded, checked),
        (
            "enableRecreateWorkloadOnImmutableFieldChange",
            Status::NotNeeded,
            "Sluice changes workloads without recreating them",
        ),
        (
            "allowClusterResourcesFromAllNamespaces",
            Status::NotNeeded,
            "Sluice's ClusterFlows and ClusterOutputs are cluster-scoped; those logging-operator read from other namespaces were converted",
        ),
        (
            "enableRawFluentdFilter",
            Status::NotNeeded,
            "raw filters are reported on the flows that have them",
        ),
        (
            "enableDockerParserCompatibilityForCRI",
            Status::NotNeeded,
            "Sluice's agent puts the line in `log` on every runtime",
        ),
        (
            "fluentBitAgentNamespace",
            Status::Changed,
            "Sluice runs the agents in the control namespace",
        ),
        (
            "flowConfigOverride",
            Status::NotConverted,
            "Sluice never renders raw configuration",
        ),
        (
            "syslogNG",
            Status::NotConverted,
            "Sluice's aggregator is fluentd; syslog-ng is not offered",
        ),
    ] {
        if let Some(at) = spec.field(key) {
            match status {
                Status::NotNeeded => fields.not_needed(&at, why),
                Status::Changed => fields.changed(&at, None, why),
                _ => fields.lost(&at, why),
            }
        }
    }
    if let Some(at) = spec.field("clusterDomain") {
        let domain = fields.string(&at).unwrap_or_default();
        if domain.trim_end_matches('.') == crate::layout::CLUSTER_DOMAIN {
            fields.not_needed(&at, "cluster.local, as Sluice uses");
        } else {
            fields.lost(&at, "Sluice names services in cluster.local");
        }
    }
    if let Some(at) = spec.field("routeConfig") {
        let telemetry = at
            .field("enableTelemetryControllerRoute")
            .and_then(|t| t.node.scalar_text())
            .as_deref()
            == Some("true");
        if telemetry {
            fields.lost(&at, "Sluice does not feed the Telemetry Controller");
        } else {
            fields.not_needed(&at, "LoggingRoute settings: Sluice has no shared collector");
        }
    }
}

fn resources(fields: &mut Fields<'_>, at: &At<'_>, target: &str) -> Option<Resources> {
    let mut resources = Resources::default();
    for (key, slot) in [
        ("requests", &mut resources.requests),
        ("limits", &mut resources.limits),
    ] {
        if let Some(part) = at.field(key) {
            *slot = fields.string_map(&part);
            fields.converted(&part, format!("{target}.{key}"));
        }
    }
    (resources != Resources::default()).then_some(resources)
}

fn scheduling(fields: &mut Fields<'_>, at: &At<'_>, target: &str, scheduling: &mut PodScheduling) {
    if let Some(s) = at.field("nodeSelector") {
        scheduling.node_selector = fields.string_map(&s);
        fields.converted(&s, format!("{target}.nodeSelector"));
    }
    if let Some(t) = at.field("tolerations") {
        match serde_json::from_value(to_json(t.node)) {
            Ok(tolerations) => {
                scheduling.tolerations = tolerations;
                fields.converted(&t, format!("{target}.tolerations"));
            }
            Err(e) => fields.error(&t, format!("not a list of tolerations: {e}")),
        }
    }
    if let Some(a) = at.field("affinity") {
        scheduling.affinity = Some(to_json(a.node));
        fields.converted(&a, format!("{target}.affinity"));
    }
    if let Some(p) = at.field("podPriorityClassName") {
        scheduling.priority_class_name = fields.string(&p);
        fields.converted(&p, format!("{target}.priorityClassName"));
    }
}

/// logging-operator's FluentdSpec (`spec.fluentd` or a FluentdConfig's spec).
fn fluentd(fields: &mut Fields<'_>, at: &At<'_>, aggregator: &mut AggregatorSpec) {
    let target = "spec.aggregator";
    if let Some(scaling) = at.field("scaling") {
        if let Some(r) = scaling.field("replicas") {
            aggregator.replicas = fields
                .int(&r)
                .and_then(|n| i32::try_from(n).ok())
                .filter(|n| *n > 0);
            fields.converted(&r, format!("{target}.replicas"));
        }
        if let Some(d) = scaling.field("drain") {
            fields.not_needed(
                &d,
                "Sluice drains a pod's buffers before scaling in (docs/operations.md)",
            );
        }
    }
    if let Some(r) = at.field("resources") {
        aggregator.resources = resources(fields, &r, &format!("{target}.resources"));
    }
    scheduling(fields, at, target, &mut aggregator.scheduling);
    if let Some(w) = at.field("workers") {
        aggregator.workers = fields.int(&w).and_then(|n| i32::try_from(n).ok());
        fields.converted(&w, format!("{target}.workers"));
    }
    if let Some(p) = at.field("port") {
        aggregator.port = fields.int(&p).and_then(|n| i32::try_from(n).ok());
        fields.converted(&p, format!("{target}.port"));
    }
    if let Some(p) = at.field("pdb") {
        if let Some(m) = p.field("maxUnavailable") {
            aggregator.pod_disruption_budget =
                serde_json::from_value(to_json(m.node))
                    .ok()
                    .map(|max| PodDisruptionBudgetSpec {
                        enabled: None,
                        max_unavailable: Some(max),
                    });
            fields.converted(&m, format!("{target}.podDisruptionBudget.maxUnavailable"));
        }
    } else {
        fields.note(Status::Changed, at, Some(format!("{target}.podDisruptionBudget")), "logging-operator creates no PodDisruptionBudget unless asked; Sluice creates one (maxUnavailable 1)");
    }
    let disable_pvc = at
        .field("disablePvc")
        .map(|d| (fields.bool(&d) == Some(true), d));
    match (at.field("bufferStorageVolume"), disable_pvc.clone()) {
        (_, Some((true, d))) => {
            aggregator.buffer_volume = Some(BufferVolumeSpec {
                persistent_volume_claim: None,
                empty_dir: Some(EmptyDirBufferSpec::default()),
            });
            fields.converted_note(
                &d,
                format!("{target}.bufferVolume.emptyDir"),
                "buffered records are lost when a pod is deleted, as before",
            );
        }
        (Some(volume), _) => buffer_volume(fields, &volume, aggregator),
        (None, _) => fluentd_defaults(fields, at, aggregator),
    }
    if let Some((false, d)) = &disable_pvc {
        fields.not_needed(d, "off: a PersistentVolumeClaim per replica, as in Sluice");
    }
    for key in ["tls"] {
        if let Some(t) = at.field(key) {
            fields.not_needed(&t, "Sluice mints, rotates and checks the agent-to-aggregator TLS itself, always on, verified on both sides (docs/tls.md)");
        }
    }
    if let Some(i) = at.field("image") {
        fields.not_needed(&i, "Sluice pins its aggregator image (docs/dataplane.md): the configuration it renders is checked against that fluentd and its plugins");
    }
    for key in [
        "configReloaderImage",
        "configReloaderResources",
        "configReloaderUseGracefulReloadWebhook",
        "configCheckResources",
        "configCheckAnnotations",
        "configCheck",
        "volumeModImage",
        "volumeMountChmod",
        "bufferVolumeImage",
        "bufferVolumeMetrics",
        "bufferVolumeResources",
        "bufferVolumeArgs",
        "bufferVolumeLivenessProbe",
        "readinessDefaultCheck",
        "livenessDefaultCheck",
        "compressConfigFile",
        "metrics",
    ] {
        if let Some(f) = at.field(key) {
            fields.not_needed(&f, "Sluice's own machinery (reloader, config check, metrics on port 24231) takes its place");
        }
    }
}

/// No buffer volume written: logging-operator's default size, written out.
fn fluentd_defaults(fields: &mut Fields<'_>, at: &At<'_>, aggregator: &mut AggregatorSpec) {
    aggregator.buffer_volume = Some(BufferVolumeSpec {
        persistent_volume_claim: Some(PersistentBufferSpec {
            size: Some(INCUMBENT_BUFFER_VOLUME.to_owned()),
            storage_class_name: None,
        }),
        empty_dir: None,
    });
    fields.note(
        Status::Converted,
        at,
        Some(format!(
            "spec.aggregator.bufferVolume.persistentVolumeClaim.size {INCUMBENT_BUFFER_VOLUME}"
        )),
        "logging-operator's default buffer volume, written out (Sluice's own default is 10Gi)",
    );
}

fn buffer_volume(fields: &mut Fields<'_>, volume: &At<'_>, aggregator: &mut AggregatorSpec) {
    let target = "spec.aggregator.bufferVolume";
    if let Some(pvc) = volume.field("pvc") {
        let mut claim = PersistentBufferSpec::default();
        if let Some(spec) = pvc.field("spec") {
            if let Some(storage) = spec
                .field("resources")
                .and_then(|r| r.field("requests"))
                .and_then(|r| r.field("storage"))
            {
                claim.size = fields.string(&storage);
                fields.converted(&storage, format!("{target}.persistentVolumeClaim.size"));
            }
            if let Some(class) = spec.field("storageClassName") {
                claim.storage_class_name = fields.string(&class);
                fields.converted(
                    &class,
                    format!("{target}.persistentVolumeClaim.storageClassName"),
                );
            }
            if let Some(modes) = spec.field("accessModes") {
                fields.not_needed(
                    &modes,
                    "Sluice's buffer claims are ReadWriteOnce, one per replica",
                );
            }
        }
        if claim.size.is_none() {
            claim.size = Some(INCUMBENT_BUFFER_VOLUME.to_owned());
            fields.note(
                Status::Converted,
                &pvc,
                Some(format!(
                    "{target}.persistentVolumeClaim.size {INCUMBENT_BUFFER_VOLUME}"
                )),
                "logging-operator's default size, written out",
            );
        }
        aggregator.buffer_volume = Some(BufferVolumeSpec {
            persistent_volume_claim: Some(claim),
            empty_dir: None,
        });
    } else if let Some(dir) = volume.field("emptyDir") {
        let size_limit = dir.field("sizeLimit").and_then(|s| {
            let size = fields.string(&s);
            fields.converted(&s, format!("{target}.emptyDir.sizeLimit"));
            size
        });
        fields.note(
            Status::Converted,
            &dir,
            Some(format!("{target}.emptyDir")),
            "buffered records are lost when a pod is deleted, as before",
        );
        aggregator.buffer_volume = Some(BufferVolumeSpec {
            persistent_volume_claim: None,
            empty_dir: Some(EmptyDirBufferSpec { size_limit }),
        });
    }
}

/// logging-operator's FluentbitSpec (a FluentbitAgent's spec or `spec.fluentbit`).
fn fluentbit(fields: &mut Fields<'_>, at: &At<'_>, agent: &mut AgentSpec) {
    let target = "spec.agent";
    if let Some(r) = at.field("resources") {
        agent.resources = resources(fields, &r, &format!("{target}.resources"));
    }
    scheduling(fields, at, target, &mut agent.scheduling);
    let mut metadata = KubernetesMetadataSpec::default();
    let mut annotations_written = false;
    if let Some(filter) = at.field("filterKubernetes") {
        let setting = |fields: &mut Fields<'_>, key: &str| {
            filter.field(key).map(|f| {
                let on = fields
                    .string(&f)
                    .is_some_and(|v| v.eq_ignore_ascii_case("on"));
                (f, on)
            })
        };
        if let Some((f, on)) = setting(fields, "Use_Kubelet") {
            metadata.use_kubelet = Some(on);
            fields.converted(&f, format!("{target}.kubernetesMetadata.useKubelet"));
        }
        if let Some((f, on)) = setting(fields, "Annotations") {
            metadata.annotations = Some(on);
            annotations_written = true;
            fields.converted(&f, format!("{target}.kubernetesMetadata.annotations"));
        }
        if let Some(f) = filter.field("Kube_Meta_Cache_TTL") {
            let ttl = fields.string(&f).unwrap_or_default();
            let ttl = if ttl.chars().all(|c| c.is_ascii_digit()) {
                format!("{ttl}s")
            } else {
                ttl
            };
            let valid = ttl.len() > 1
                && ttl[..ttl.len() - 1].chars().all(|c| c.is_ascii_digit())
                && ttl.ends_with(['s', 'm', 'h', 'd']);
            if valid && ttl != "0s" {
                metadata.cache_ttl = Some(ttl);
                fields.converted(&f, format!("{target}.kubernetesMetadata.cacheTtl"));
            } else {
                fields.changed(&f, None, "Sluice always expires cached pod metadata (default 10m), so label changes reach routing");
            }
        }
        if let Some((f, on)) = setting(fields, "Labels") {
            if on {
                fields.not_needed(&f, "Sluice always attaches pod labels");
            } else {
                fields.changed(&f, None, "Sluice always attaches pod labels; flows selecting by labels never matched in logging-operator and were converted accordingly");
            }
        }
        if let Some((f, on)) = setting(fields, "namespace_labels") {
            if on {
                fields.not_needed(
                    &f,
                    "Sluice attaches namespace labels whenever a ClusterFlow selects by them",
                );
            } else {
                fields.changed(&f, None, "Sluice attaches namespace labels whenever a ClusterFlow selects by them; rules on them never matched in logging-operator and were converted accordingly");
            }
        }
        if let Some((f, _)) = setting(fields, "K8S-Logging.Exclude") {
            fields.converted(&f, "spec.tenantLimits.allowPodOptOut");
        }
        if let Some(f) = filter.field("Merge_Log") {
            fields.changed(&f, None, "Sluice's agent parses a JSON line into `log_processed`, not into the record's top level: name such fields $.log_processed.<field>");
        }
    }
    if !annotations_written {
        metadata.annotations = Some(true);
        fields.note(Status::Converted, at, Some(format!("{target}.kubernetesMetadata.annotations true")), "logging-operator's agent attaches pod annotations by default; written out (Sluice's default leaves them out)");
    }
    fields.note(Status::Changed, at, None, "logging-operator's agent merges a JSON line's fields into the record's top level (Merge_Log); Sluice's puts them under `log_processed`: filters and outputs naming such fields need $.log_processed.<field>");
    agent.kubernetes_metadata = Some(metadata);
    if let Some(u) = at.field("updateStrategy") {
        if let Some(m) = u
            .field("rollingUpdate")
            .and_then(|r| r.field("maxUnavailable"))
        {
            agent.max_unavailable = serde_json::from_value(to_json(m.node)).ok();
            fields.converted(&m, format!("{target}.maxUnavailable"));
        }
        if let Some(t) = u.field("type") {
            fields.not_needed(&t, "Sluice rolls the agents (RollingUpdate)");
        }
    }
    if let Some(p) = at.field("metrics").and_then(|m| m.field("port")) {
        agent.metrics_port = fields.int(&p).and_then(|n| i32::try_from(n).ok());
        fields.converted(&p, format!("{target}.metricsPort"));
    }
    if let Some(d) = at.field("disableVarLibDockerContainers") {
        if fields.bool(&d) == Some(false) {
            agent.log_path_roots = vec![
                "/var/log".to_owned(),
                "/var/lib/docker/containers".to_owned(),
            ];
            fields.converted(&d, format!("{target}.logPathRoots"));
        } else {
            fields.not_needed(
                &d,
                "Sluice mounts /var/log only unless logPathRoots says otherwise",
            );
        }
    }
    for (key, why) in [
        (
            "tls",
            "Sluice mints, rotates and checks the agent-to-aggregator TLS itself, always on, verified on both sides (docs/tls.md)",
        ),
        (
            "image",
            "Sluice pins its agent image (docs/dataplane.md): the configuration it renders is checked against that fluent-bit",
        ),
        (
            "configHotReload",
            "Sluice reloads the agents' configuration without restarts always (docs/architecture.md)",
        ),
        (
            "positiondb",
            "Sluice keeps its own tail positions below spec.agent.stateHostPath",
        ),
        (
            "position_db",
            "Sluice keeps its own tail positions below spec.agent.stateHostPath",
        ),
        (
            "targetHost",
            "Sluice's agents send to their Logging's aggregator",
        ),
        (
            "targetPort",
            "Sluice's agents send to their Logging's aggregator",
        ),
    ] {
        if let Some(f) = at.field(key) {
            fields.not_needed(&f, why);
        }
    }
}

/// A LoggingRoute: what it did is what each converted Logging's own agent does.
pub fn logging_route(fields: &mut Fields<'_>) {
    let spec = At::spec(fields.object);
    if let Some(targets) = spec.field("targets")
        && let Err(message) = try_label_selector(targets.node)
    {
        fields.error(&targets, message);
    }
    fields.about_object(
        Status::Changed,
        "spec",
        None,
        "Sluice has no shared collector: every converted Logging runs its own agent, which collects the Logging's watched namespaces, as a LoggingRoute tenant received them",
    );
}
