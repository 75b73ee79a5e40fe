//! The agent DaemonSet and the aggregator StatefulSet.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet, StatefulSet,
    StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    ExecAction, HTTPGetAction, HostPathVolumeSource, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecretProjection, SecretVolumeSource, SecurityContext, TCPSocketAction,
    Toleration, Volume, VolumeMount, VolumeProjection, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Hashes, metadata};
use crate::api::{PodScheduling, Resources, TlsMode};
use crate::layout::{self, Names};
use crate::model::{Pipeline, capacity};

pub(crate) const AGENT: &str = layout::AGENT_COMPONENT;
pub(crate) const AGGREGATOR: &str = layout::AGGREGATOR_COMPONENT;

/// Seconds between two startup probes of the aggregator.
const STARTUP_PROBE_PERIOD_SECONDS: i32 = 10;

/// Failed startup probes tolerated: twice the check timeout and a minute (see the probe).
fn startup_failure_threshold(check_timeout_seconds: u64) -> i32 {
    let budget = check_timeout_seconds.saturating_mul(2).saturating_add(60);
    i32::try_from(budget.div_ceil(STARTUP_PROBE_PERIOD_SECONDS.unsigned_abs().into()))
        .unwrap_or(i32::MAX)
}

/// Group given to the aggregator's volumes, so fluentd can write buffers whatever user the
/// image runs as.
const AGGREGATOR_FS_GROUP: i64 = 2000;

pub(crate) fn aggregator_port(pipeline: &Pipeline) -> i32 {
    pipeline
        .spec
        .aggregator
        .as_ref()
        .and_then(|a| a.port)
        .unwrap_or(layout::DEFAULT_AGGREGATOR_PORT)
}

fn tls_enabled(pipeline: &Pipeline) -> bool {
    pipeline
        .spec
        .tls
        .as_ref()
        .and_then(|t| t.mode)
        .unwrap_or_default()
        != TlsMode::Disabled
}

fn shared_key_env(names: &Names, pipeline: &Pipeline) -> EnvVar {
    let source = crate::pki::shared_key_source(names, &pipeline.spec.tls_or_default());
    EnvVar {
        name: layout::SHARED_KEY_ENV.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: source.name,
                key: source.key,
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn resources(spec: Option<&Resources>, default: &Resources) -> ResourceRequirements {
    let spec = spec.unwrap_or(default);
    let quantities = |map: &BTreeMap<String, String>| -> Option<BTreeMap<String, Quantity>> {
        (!map.is_empty()).then(|| {
            map.iter()
                .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                .collect()
        })
    };
    ResourceRequirements {
        requests: quantities(&spec.requests),
        limits: quantities(&spec.limits),
        ..ResourceRequirements::default()
    }
}

fn secret_volume(name: &str, secret: String) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Mounted as directories, never via subPath, so Secret updates reach running pods.
fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn hardened_container_security(read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(read_only_root),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn affinity(scheduling: &PodScheduling) -> Option<Affinity> {
    // The schema passes affinity through unvalidated; a malformed one is dropped here rather
    // than failing the whole build, and the API server never sees it.
    scheduling
        .affinity
        .clone()
        .and_then(|value| serde_json::from_value(value).ok())
}

/// No hash of the configuration: it reaches running pods through the reloader. Only the TLS
/// material, read when the processes start, rolls them.
fn pod_template(names: &Names, component: &str, hashes: &Hashes, spec: PodSpec) -> PodTemplateSpec {
    let annotations = (!hashes.tls.is_empty())
        .then(|| BTreeMap::from([(layout::TLS_HASH_ANNOTATION.to_owned(), hashes.tls.clone())]));
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(names.selector_labels(component)),
            annotations,
            ..ObjectMeta::default()
        }),
        spec: Some(spec),
    }
}

/// A projected volume of Secrets. Every source of the accepted bundle is optional (nothing
/// was accepted yet on a first start); of the candidate, only the main Secret is required.
fn projected_secrets(name: &str, secrets: &[(String, bool)]) -> Volume {
    Volume {
        name: name.to_owned(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o440),
            sources: Some(
                secrets
                    .iter()
                    .map(|(secret, optional)| VolumeProjection {
                        secret: Some(SecretProjection {
                            name: secret.clone(),
                            optional: Some(*optional),
                            ..SecretProjection::default()
                        }),
                        ..VolumeProjection::default()
                    })
                    .collect(),
            ),
        }),
        ..Volume::default()
    }
}

fn empty_dir(name: &str, memory: bool, size_limit: Option<&str>) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: memory.then(|| "Memory".to_owned()),
            size_limit: size_limit.map(|size| Quantity(size.to_owned())),
        }),
        ..Volume::default()
    }
}

/// How one data-plane binary checks and reloads its configuration.
struct ReloadCommand {
    /// Entry file of the bundle, inside a revision directory.
    entry: &'static str,
    /// The binary's own check, `{dir}` standing for the revision directory.
    validate: Vec<String>,
    reload_url: String,
    reload_method: &'static str,
    /// Further flags of `sluice reload`.
    flags: Vec<(&'static str, String)>,
    memory_limit: String,
}

/// Volumes, init containers and the sidecar that deliver config bundles to a data-plane
/// container (docs/architecture.md, "Config reload"). `data_plane` is the data-plane
/// container: its image runs the check, its env and mounts are what the check sees.
struct Reloader {
    volumes: Vec<Volume>,
    init_containers: Vec<Container>,
    sidecar: Container,
}

fn reloader(
    pipeline: &Pipeline,
    component: &str,
    data_plane: &Container,
    command: ReloadCommand,
) -> Reloader {
    let names = &pipeline.names;
    let candidates = names.candidate_bundle_secrets(component);
    let candidate_sources: Vec<(String, bool)> = candidates
        .iter()
        .enumerate()
        .map(|(index, name)| (name.clone(), index != 0))
        .collect();
    let accepted_sources: Vec<(String, bool)> = candidates
        .iter()
        .filter_map(|name| names.accepted_secret(name))
        .map(|name| (name, true))
        .collect();
    let volumes = vec![
        empty_dir("sluice-bin", false, Some("128Mi")),
        projected_secrets("config-candidate", &candidate_sources),
        projected_secrets("config-accepted", &accepted_sources),
        // Memory: the bundle holds output credentials, which never touch the node's disk.
        empty_dir("config-active", true, Some("64Mi")),
    ];
    let image = pipeline
        .spec
        .reloader
        .as_ref()
        .and_then(|r| r.image.clone())
        .unwrap_or_else(|| layout::DEFAULT_RELOADER_IMAGE.to_owned());
    let install = Container {
        name: "install-reloader".to_owned(),
        image: Some(image),
        command: Some(vec![
            "/usr/local/bin/sluice".to_owned(),
            "copy-binary".to_owned(),
            layout::SLUICE_BINARY.to_owned(),
        ]),
        resources: Some(resources(
            None,
            &Resources {
                requests: BTreeMap::from([
                    ("cpu".into(), "10m".into()),
                    ("memory".into(), "16Mi".into()),
                ]),
                limits: BTreeMap::from([("memory".into(), "64Mi".into())]),
            },
        )),
        security_context: Some(hardened_container_security(true)),
        volume_mounts: Some(vec![mount("sluice-bin", layout::SLUICE_BIN_DIR, false)]),
        ..Container::default()
    };
    // What the data-plane container reads (TLS, buffers, routes), except the active config,
    // which the reloader writes.
    let mut mounts: Vec<VolumeMount> = data_plane
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name != "config-active" && !m.name.starts_with("logs-") && m.name != "state")
        .cloned()
        .collect();
    mounts.extend([
        mount("sluice-bin", layout::SLUICE_BIN_DIR, true),
        mount("config-candidate", layout::RELOAD_CANDIDATE_DIR, true),
        mount("config-accepted", layout::RELOAD_ACCEPTED_DIR, true),
        mount("config-active", layout::RELOAD_ACTIVE_DIR, false),
    ]);
    let arguments = |once: bool| {
        let mut args = vec![layout::SLUICE_BINARY.to_owned(), "reload".to_owned()];
        if once {
            args.push("--once".to_owned());
        }
        for (flag, value) in [
            ("--candidate", layout::RELOAD_CANDIDATE_DIR.to_owned()),
            ("--accepted", layout::RELOAD_ACCEPTED_DIR.to_owned()),
            ("--active", layout::RELOAD_ACTIVE_DIR.to_owned()),
            ("--entry", command.entry.to_owned()),
            ("--reload-url", command.reload_url.clone()),
            ("--reload-method", command.reload_method.to_owned()),
            ("--listen", format!("0.0.0.0:{}", layout::RELOADER_PORT)),
        ]
        .into_iter()
        .chain(command.flags.iter().cloned())
        {
            args.push(format!("{flag}={value}"));
        }
        args.push("--".to_owned());
        args.extend(command.validate.iter().cloned());
        args
    };
    let reloader_resources = resources(
        None,
        &Resources {
            requests: BTreeMap::from([
                ("cpu".into(), "10m".into()),
                ("memory".into(), "64Mi".into()),
            ]),
            // The check loads the data-plane binary with every plugin.
            limits: BTreeMap::from([("memory".into(), command.memory_limit.clone())]),
        },
    );
    let init = Container {
        name: "config-init".to_owned(),
        image: data_plane.image.clone(),
        command: Some(arguments(true)),
        env: data_plane.env.clone(),
        resources: Some(reloader_resources.clone()),
        security_context: data_plane.security_context.clone(),
        volume_mounts: Some(mounts.clone()),
        ..Container::default()
    };
    let sidecar = Container {
        name: "config-reloader".to_owned(),
        image: data_plane.image.clone(),
        command: Some(arguments(false)),
        env: data_plane.env.clone(),
        ports: Some(vec![ContainerPort {
            name: Some("reloader".to_owned()),
            container_port: layout::RELOADER_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".to_owned()),
                port: IntOrString::String("reloader".to_owned()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(10),
            ..Probe::default()
        }),
        resources: Some(reloader_resources),
        security_context: data_plane.security_context.clone(),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    Reloader {
        volumes,
        init_containers: vec![install, init],
        sidecar,
    }
}

pub(crate) fn agent_daemon_set(
    pipeline: &Pipeline,
    hashes: &Hashes,
    owner: &Option<OwnerReference>,
) -> DaemonSet {
    let names = &pipeline.names;
    let agent = pipeline.spec.agent.clone().unwrap_or_default();
    let metrics_port = agent
        .metrics_port
        .unwrap_or(layout::DEFAULT_AGENT_METRICS_PORT);
    let roots = if agent.log_path_roots.is_empty() {
        vec!["/var/log".to_owned()]
    } else {
        agent.log_path_roots.clone()
    };
    let state_path = names.agent_state_host_path(&pipeline.spec);

    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (index, root) in roots.iter().enumerate() {
        let name = format!("logs-{index}");
        volumes.push(Volume {
            name: name.clone(),
            host_path: Some(HostPathVolumeSource {
                path: root.clone(),
                type_: Some("Directory".to_owned()),
            }),
            ..Volume::default()
        });
        mounts.push(mount(&name, root, true));
    }
    volumes.push(Volume {
        name: "state".to_owned(),
        host_path: Some(HostPathVolumeSource {
            path: state_path,
            type_: Some("DirectoryOrCreate".to_owned()),
        }),
        ..Volume::default()
    });
    mounts.push(mount("state", layout::AGENT_STATE_DIR, false));
    mounts.push(mount("config-active", layout::RELOAD_ACTIVE_DIR, true));
    // The index and every slot in one directory. None is optional: the filter refuses to
    // start without a complete table, and the kubelet starts the pod only once all exist.
    let route_sources: Vec<(String, bool)> = names
        .agent_routes_secrets()
        .into_iter()
        .map(|secret| (secret, false))
        .collect();
    volumes.push(projected_secrets("routes", &route_sources));
    mounts.push(mount("routes", layout::AGENT_ROUTES_DIR, true));
    if tls_enabled(pipeline) {
        volumes.push(secret_volume(
            "tls",
            crate::pki::mounted_tls_secrets(names, &pipeline.spec.tls_or_default()).1,
        ));
        mounts.push(mount("tls", layout::AGENT_TLS_DIR, true));
    }

    // The limit fits what real fluent-bit 5.1.1 reached with 1,000 routes active on one node
    // (330-360 MB at 50,000 records/s, 429 MB reading a backlog; benches/README.md): at
    // 256Mi such a node's agent was killed, and the copies in its memory went with it.
    let default_resources = Resources {
        requests: BTreeMap::from([
            ("cpu".into(), "100m".into()),
            ("memory".into(), "64Mi".into()),
        ]),
        limits: BTreeMap::from([("memory".into(), "512Mi".into())]),
    };
    let container = Container {
        name: "fluent-bit".to_owned(),
        image: Some(
            agent
                .image
                .clone()
                .unwrap_or_else(|| layout::DEFAULT_AGENT_IMAGE.to_owned()),
        ),
        command: Some(vec![
            "/fluent-bit/bin/fluent-bit".to_owned(),
            "--config".to_owned(),
            format!(
                "{}/{}",
                layout::RELOAD_CURRENT_LINK,
                layout::AGENT_CONFIG_FILE
            ),
        ]),
        env: Some(vec![
            EnvVar {
                name: layout::NODE_NAME_ENV.to_owned(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "spec.nodeName".to_owned(),
                        ..ObjectFieldSelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            },
            shared_key_env(names, pipeline),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".to_owned()),
            container_port: metrics_port,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/".to_owned()),
                port: IntOrString::String("metrics".to_owned()),
                ..HTTPGetAction::default()
            }),
            initial_delay_seconds: Some(10),
            period_seconds: Some(30),
            ..Probe::default()
        }),
        resources: Some(resources(agent.resources.as_ref(), &default_resources)),
        // Root inside the container is needed to read root-owned log files; nothing else is.
        security_context: Some(hardened_container_security(true)),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let reloader = reloader(
        pipeline,
        AGENT,
        &container,
        ReloadCommand {
            entry: layout::AGENT_CONFIG_FILE,
            validate: vec![
                "/fluent-bit/bin/fluent-bit".to_owned(),
                "--dry-run".to_owned(),
                "--config".to_owned(),
                format!("{{dir}}/{}", layout::AGENT_CONFIG_FILE),
            ],
            // fluent-bit's hot reload (`hot_reload on` in the service section) re-reads the
            // same `--config` path, which the reloader has pointed at the new revision.
            reload_url: format!("http://127.0.0.1:{metrics_port}/api/v2/reload"),
            reload_method: "post",
            flags: Vec::new(),
            memory_limit: "128Mi".to_owned(),
        },
    );
    volumes.extend(reloader.volumes);
    let tolerations = if agent.scheduling.tolerations.is_empty() {
        // A log agent belongs on every node, tainted or not.
        vec![Toleration {
            operator: Some("Exists".to_owned()),
            ..Toleration::default()
        }]
    } else {
        agent.scheduling.tolerations.clone()
    };
    let pod = PodSpec {
        service_account_name: Some(super::agent_service_account(pipeline).to_owned()),
        init_containers: Some(reloader.init_containers),
        containers: vec![container, reloader.sidecar],
        volumes: Some(volumes),
        tolerations: Some(tolerations),
        node_selector: (!agent.scheduling.node_selector.is_empty())
            .then(|| agent.scheduling.node_selector.clone()),
        affinity: affinity(&agent.scheduling),
        priority_class_name: agent.scheduling.priority_class_name.clone(),
        termination_grace_period_seconds: Some(30),
        security_context: Some(PodSecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        ..PodSpec::default()
    };
    DaemonSet {
        metadata: metadata(names, names.agent(), AGENT, owner),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(names.selector_labels(AGENT)),
                ..LabelSelector::default()
            },
            template: pod_template(names, AGENT, hashes, pod),
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(
                        agent
                            .max_unavailable
                            .clone()
                            .unwrap_or(IntOrString::String("10%".to_owned())),
                    ),
                    ..RollingUpdateDaemonSet::default()
                }),
            }),
            ..DaemonSetSpec::default()
        }),
        ..DaemonSet::default()
    }
}

pub(crate) fn aggregator_stateful_set(
    pipeline: &Pipeline,
    hashes: &Hashes,
    owner: &Option<OwnerReference>,
) -> StatefulSet {
    let names = &pipeline.names;
    let aggregator = pipeline.spec.aggregator.clone().unwrap_or_default();
    let port = aggregator_port(pipeline);

    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    mounts.push(mount("config-active", layout::RELOAD_ACTIVE_DIR, true));
    if tls_enabled(pipeline) {
        volumes.push(secret_volume(
            "tls",
            crate::pki::mounted_tls_secrets(names, &pipeline.spec.tls_or_default()).0,
        ));
        mounts.push(mount("tls", layout::AGGREGATOR_TLS_DIR, true));
    }
    mounts.push(mount("buffer", layout::AGGREGATOR_BUFFER_DIR, false));
    let buffer = aggregator.buffer_volume.clone().unwrap_or_default();
    let claim_templates = match buffer.empty_dir {
        Some(empty_dir) => {
            volumes.push(Volume {
                name: "buffer".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: empty_dir.size_limit.map(Quantity),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            });
            None
        }
        None => {
            let claim = buffer.persistent_volume_claim.unwrap_or_default();
            Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("buffer".to_owned()),
                    // Template labels never carry versions: the field is immutable.
                    labels: Some(names.selector_labels(AGGREGATOR)),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                    storage_class_name: claim.storage_class_name,
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_owned(),
                            Quantity(claim.size.unwrap_or_else(|| "10Gi".to_owned())),
                        )])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }])
        }
    };

    let default_resources = Resources {
        requests: BTreeMap::from([
            ("cpu".into(), "500m".into()),
            ("memory".into(), "512Mi".into()),
        ]),
        limits: BTreeMap::from([(
            "memory".into(),
            layout::DEFAULT_AGGREGATOR_MEMORY_LIMIT.into(),
        )]),
    };
    let check_timeout = capacity::check_timeout_seconds(&pipeline.spec);
    let forward_probe = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("forward".to_owned()),
            ..TCPSocketAction::default()
        }),
        initial_delay_seconds: Some(5),
        period_seconds: Some(10),
        ..Probe::default()
    };
    let container = Container {
        name: "fluentd".to_owned(),
        image: Some(
            aggregator
                .image
                .clone()
                .unwrap_or_else(|| layout::DEFAULT_AGGREGATOR_IMAGE.to_owned()),
        ),
        args: Some(vec![
            "-c".to_owned(),
            format!(
                "{}/{}",
                layout::RELOAD_CURRENT_LINK,
                layout::AGGREGATOR_CONFIG_FILE
            ),
            // fluentd's own "load library" option: passed on to the workers with the rest
            // of the command line, and independent of the image's entrypoint.
            "-r".to_owned(),
            format!(
                "{}/{}",
                layout::RELOAD_CURRENT_LINK,
                layout::AGGREGATOR_REGEXP_TIMEOUT_FILE
            ),
        ]),
        env: Some(vec![shared_key_env(names, pipeline)]),
        ports: Some(vec![
            ContainerPort {
                name: Some("forward".to_owned()),
                container_port: port,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("metrics".to_owned()),
                container_port: layout::AGGREGATOR_METRICS_PORT,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(forward_probe),
        // fluentd listens only once the supervisor and then the worker have configured
        // every plugin, which takes about as long as two checks: the capacity model keeps a
        // check within half its timeout, so twice the timeout and a minute bound the start
        // of any configuration the operator renders. Until then no liveness probe runs.
        startup_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("metrics".to_owned()),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(STARTUP_PROBE_PERIOD_SECONDS),
            failure_threshold: Some(startup_failure_threshold(check_timeout)),
            ..Probe::default()
        }),
        // On the metrics port: the forward input is what a drain or a rejected reload may
        // take away, and that must not get the pod killed. A graceful reload configures the
        // new plugins while the old ones still listen; the port is closed only between
        // stopping the old and starting the new ones.
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("metrics".to_owned()),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(10),
            failure_threshold: Some(6),
            ..Probe::default()
        }),
        // Endpoints drop the pod while it still accepts, so agents move their connections
        // before fluentd stops listening (the agents retry what was in flight).
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["sleep".to_owned(), "5".to_owned()]),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: Some(resources(aggregator.resources.as_ref(), &default_resources)),
        security_context: Some(hardened_container_security(false)),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let reloader = reloader(
        pipeline,
        AGGREGATOR,
        &container,
        ReloadCommand {
            entry: layout::AGGREGATOR_CONFIG_FILE,
            validate: vec![
                "fluentd".to_owned(),
                "--dry-run".to_owned(),
                "-c".to_owned(),
                format!("{{dir}}/{}", layout::AGGREGATOR_CONFIG_FILE),
                "-r".to_owned(),
                format!("{{dir}}/{}", layout::AGGREGATOR_REGEXP_TIMEOUT_FILE),
            ],
            // A worker restart, not a graceful reload (docs/architecture.md, "Config reload"):
            // the supervisor sends SIGTERM to its workers and starts them again on the `-c`
            // path, which the reloader has pointed at the checked revision (fluentd 1.17.1 and
            // 1.19 alike: lib/fluent/supervisor.rb, `/api/config.reload` → SIGHUP →
            // `kill_worker`). The old worker's connections close with it, so agents resend
            // what it never acknowledged; its buffers are on disk for the new one.
            reload_url: format!(
                "http://{}{}",
                layout::AGGREGATOR_RPC_ENDPOINT,
                layout::AGGREGATOR_RELOAD_PATH
            ),
            reload_method: "get",
            // A drain before scale-in waits for these chunks, and has fluentd flush them.
            flags: vec![
                ("--buffer-dir", layout::AGGREGATOR_BUFFER_DIR.to_owned()),
                (
                    "--flush-url",
                    format!(
                        "http://{}/api/plugins.flushBuffers",
                        layout::AGGREGATOR_RPC_ENDPOINT
                    ),
                ),
                ("--validate-timeout", format!("{check_timeout}s")),
            ],
            // The check configures every plugin of the configuration; the capacity model
            // keeps configurations within this limit (docs/dataplane.md, "Capacity").
            memory_limit: capacity::check_memory_limit(&pipeline.spec),
        },
    );
    volumes.extend(reloader.volumes);
    let pod = PodSpec {
        service_account_name: Some(names.aggregator()),
        automount_service_account_token: Some(false),
        init_containers: Some(reloader.init_containers),
        containers: vec![container, reloader.sidecar],
        volumes: Some(volumes),
        tolerations: (!aggregator.scheduling.tolerations.is_empty())
            .then(|| aggregator.scheduling.tolerations.clone()),
        node_selector: (!aggregator.scheduling.node_selector.is_empty())
            .then(|| aggregator.scheduling.node_selector.clone()),
        affinity: affinity(&aggregator.scheduling),
        priority_class_name: aggregator.scheduling.priority_class_name.clone(),
        // Time to flush in-flight chunks to the buffer volume before the pod goes.
        termination_grace_period_seconds: Some(120),
        security_context: Some(PodSecurityContext {
            fs_group: Some(AGGREGATOR_FS_GROUP),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        ..PodSpec::default()
    };
    StatefulSet {
        metadata: metadata(names, names.aggregator(), AGGREGATOR, owner),
        spec: Some(StatefulSetSpec {
            // Unset leaves the count to an autoscaler; forcing it would fight the HPA.
            replicas: aggregator.replicas,
            service_name: Some(names.aggregator_headless_service()),
            pod_management_policy: Some("Parallel".to_owned()),
            selector: LabelSelector {
                match_labels: Some(names.selector_labels(AGGREGATOR)),
                ..LabelSelector::default()
            },
            template: pod_template(names, AGGREGATOR, hashes, pod),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                ..StatefulSetUpdateStrategy::default()
            }),
            volume_claim_templates: claim_templates,
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}
