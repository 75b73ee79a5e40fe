//! Names, labels, ports and in-pod paths shared by the builder, the renderers and the PKI
//! planner, so that a Secret key, a mount path and the config that reads it cannot drift apart.

use std::collections::BTreeMap;

/// Field manager of every server-side apply Sluice makes. It is API: users see it in
/// `managedFields` and Argo CD's `managedFieldsManagers`; never change it.
pub const FIELD_MANAGER: &str = "sluice.dev/operator";

/// Label put on every object Sluice creates, naming the Logging it belongs to.
pub const LOGGING_LABEL: &str = "logging.sluice.dev/logging";
/// `app.kubernetes.io/managed-by` value on everything Sluice creates.
pub const MANAGED_BY: &str = "sluice";
/// Pod-template annotation with a hash of the TLS material and shared key.
pub const TLS_HASH_ANNOTATION: &str = "logging.sluice.dev/tls-hash";

/// ClusterRole the agents need (read pods and namespaces). The install ships it together with
/// one ClusterRoleBinding per control namespace (see [`agent_cluster_role_binding`]), so the
/// operator holds no verb at all on ClusterRoles or ClusterRoleBindings.
pub const AGENT_CLUSTER_ROLE: &str = "sluice-agent";
/// ClusterRole for agents that read pod metadata from the kubelet (`nodes/proxy`).
pub const AGENT_KUBELET_CLUSTER_ROLE: &str = "sluice-agent-kubelet";
/// The agents' ServiceAccount in a control namespace, bound by the install to
/// [`AGENT_CLUSTER_ROLE`]. Fixed rather than per Logging because one control namespace serves
/// one Logging and the install, which knows its control namespaces but not the Loggings,
/// names it in its bindings.
pub const AGENT_SERVICE_ACCOUNT: &str = "sluice-agent";
/// The ServiceAccount of agents that ask the kubelet (`useKubelet`), bound by the install to
/// both agent ClusterRoles; any other agent runs without `nodes/proxy`.
pub const AGENT_KUBELET_SERVICE_ACCOUNT: &str = "sluice-agent-kubelet";

/// The ServiceAccount an agent runs as.
pub fn agent_service_account(use_kubelet: bool) -> &'static str {
    if use_kubelet {
        AGENT_KUBELET_SERVICE_ACCOUNT
    } else {
        AGENT_SERVICE_ACCOUNT
    }
}

/// Name of the install's ClusterRoleBinding of `role` (an agent ClusterRole) for the agents
/// of `control_namespace`: `<role>:<namespace>`, which no two namespaces share.
pub fn agent_cluster_role_binding(role: &str, control_namespace: &str) -> String {
    format!("{role}:{control_namespace}")
}

/// `app.kubernetes.io/component` of the agent DaemonSet and everything it mounts.
pub const AGENT_COMPONENT: &str = "agent";
/// `app.kubernetes.io/component` of the aggregator StatefulSet and everything it mounts.
pub const AGGREGATOR_COMPONENT: &str = "aggregator";

/// Default forward port of the aggregator (the incumbent's, so NetworkPolicies carry over).
pub const DEFAULT_AGGREGATOR_PORT: i32 = 24240;
/// fluent-bit's HTTP server (health, metrics).
pub const DEFAULT_AGENT_METRICS_PORT: i32 = 2020;
/// fluentd's Prometheus/monitor port.
pub const AGGREGATOR_METRICS_PORT: i32 = 24231;
/// Default cluster DNS domain, used for fully qualified SANs.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Where the agent's TLS Secret (`ca.crt`, `tls.crt`, `tls.key`) is mounted, as a directory
/// so that Secret updates propagate (never via subPath).
pub const AGENT_TLS_DIR: &str = "/fluent-bit/tls";
/// Name of the agent's main config file in its config bundle.
pub const AGENT_CONFIG_FILE: &str = "fluent-bit.yaml";
/// The agent's routing filter (Lua), in its config bundle under a content-addressed name.
pub const AGENT_ROUTER_SCRIPT: &str = "sluice-router.lua";
/// Where the agent's routing table Secrets are mounted (one projected volume: the index and
/// every slot), outside the pod template's config hash, so routing changes reach running
/// agents without a restart.
pub const AGENT_ROUTES_DIR: &str = "/fluent-bit/routes";
/// Name of the routing table's index file inside [`AGENT_ROUTES_DIR`].
pub const AGENT_ROUTES_FILE: &str = "routes.lua";
/// The routes a routing table emits (agents' routing table Secret) or a configuration
/// dispatches (the aggregator's config bundle), one per line, sorted: what the operator
/// compares before it lets agents emit a route (docs/architecture.md, "Config reload").
pub const ROUTES_LIST_FILE: &str = "routes.list";
/// In the aggregator's config bundle: every output buffer path of the revision, one per line;
/// the reloader drains the buffers a new revision drops before it reloads.
pub const BUFFERS_LIST_FILE: &str = "buffers.list";
/// Where the agent keeps positions DBs and filesystem buffers (a hostPath).
pub const AGENT_STATE_DIR: &str = "/var/lib/sluice-agent";
/// Where the aggregator's TLS Secret is mounted.
pub const AGGREGATOR_TLS_DIR: &str = "/fluentd/tls";
/// Name of the aggregator's main config file in its config bundle.
pub const AGGREGATOR_CONFIG_FILE: &str = "fluent.conf";
/// Ruby file of the aggregator's config bundle that fluentd loads with `-r` before it reads
/// its config: it bounds every regex match (render::fluentd::regexp_timeout_script).
pub const AGGREGATOR_REGEXP_TIMEOUT_FILE: &str = "regexp-timeout.rb";
/// fluentd's RPC endpoint in the aggregator (`rpc_endpoint`): loopback only, for the reloader.
pub const AGGREGATOR_RPC_ENDPOINT: &str = "127.0.0.1:24444";
/// The RPC path the reloader loads a new aggregator revision with: the supervisor restarts its
/// workers on the `-c` path (docs/architecture.md, "Why fluentd's workers restart").
pub const AGGREGATOR_RELOAD_PATH: &str = "/api/config.reload";
/// Default agent image (docs/dataplane.md): fluent-bit 5.1 re-reads rotated certificates
/// on each new TLS session; 5.1.1 is the newest 5.1 patch release.
pub const DEFAULT_AGENT_IMAGE: &str = "cr.fluentbit.io/fluent/fluent-bit:5.1.1";
/// Default aggregator image: kube-logging's public fluentd 1.17 "full" image, which carries
/// every plugin the router, the filters and the output kinds need (docs/dataplane.md).
pub const DEFAULT_AGGREGATOR_IMAGE: &str = "ghcr.io/kube-logging/fluentd:v1.17-5.0-full";
/// Mount point of the aggregator's buffer volume.
pub const AGGREGATOR_BUFFER_DIR: &str = "/buffers";
/// Environment variable holding the shared key in both agent and aggregator pods.
pub const SHARED_KEY_ENV: &str = "SLUICE_SHARED_KEY";
/// Environment variable with the node name in agent pods (fluent-bit's `self_hostname`).
pub const NODE_NAME_ENV: &str = "NODE_NAME";

/// Config reload (docs/architecture.md, "Config reload"). Every data-plane pod mounts its
/// config bundle twice, read-only: the newest rendering (candidate) and the newest one its
/// binary accepted (accepted, promoted by the operator). The reloader installs a checked
/// bundle into the writable active directory, which the data-plane process reads.
pub const RELOAD_CANDIDATE_DIR: &str = "/sluice/candidate";
pub const RELOAD_ACCEPTED_DIR: &str = "/sluice/accepted";
pub const RELOAD_ACTIVE_DIR: &str = "/sluice/active";
/// Inside [`RELOAD_ACTIVE_DIR`]: a symlink to the running revision's directory, swapped
/// atomically; the process's `-c` path goes through it.
pub const RELOAD_CURRENT_LINK: &str = "/sluice/active/current";
/// Inside [`RELOAD_ACTIVE_DIR`]: one directory per installed revision.
pub const RELOAD_REVISIONS_DIR: &str = "/sluice/active/revisions";
/// Inside [`RELOAD_ACTIVE_DIR`]: the content-addressed shared files of every installed
/// revision (`bundle::Placement::Shared`); the configuration names them by absolute path.
pub const RELOAD_SHARED_DIR: &str = "/sluice/active/shared";
/// Where an init container from the operator's image copies the `sluice` binary, so the
/// reloader runs inside the data-plane image, next to the binary that checks the config.
pub const SLUICE_BIN_DIR: &str = "/sluice/bin";
pub const SLUICE_BINARY: &str = "/sluice/bin/sluice";
/// The reloader's HTTP port: `/status` (what it runs, accepted and rejected) and `/healthz`.
pub const RELOADER_PORT: i32 = 8099;
/// Fixed number of aggregator config slots. A flow's slot depends only on its own key, so
/// adding or editing a flow rewrites one slot Secret and the pod template never names a
/// flow-dependent volume.
pub const AGGREGATOR_CONFIG_SLOTS: usize = 32;
/// Memory limit of the aggregator's fluentd container unless the Logging sets its resources.
pub const DEFAULT_AGGREGATOR_MEMORY_LIMIT: &str = "1Gi";
/// Memory limit of the aggregator's reloader containers, where `fluentd --dry-run` checks
/// every configuration, unless the Logging sets `aggregator.configCheck.memoryLimit`.
pub const DEFAULT_CONFIG_CHECK_MEMORY: &str = "512Mi";
/// Seconds the aggregator's configuration check may run unless the Logging sets
/// `aggregator.configCheck.timeoutSeconds`.
pub const DEFAULT_CONFIG_CHECK_TIMEOUT_SECONDS: u64 = 120;
/// The operator's image, run as the init container that installs the reloader. Its tag is
/// the operator's own version, so a release's reloader and operator always match.
pub const DEFAULT_RELOADER_IMAGE: &str =
    concat!("ghcr.io/sluice-dev/sluice:", env!("CARGO_PKG_VERSION"));

/// Label on the Secrets of a config bundle: [`CONFIG_SET_CANDIDATE`] on what the operator
/// rendered, [`CONFIG_SET_ACCEPTED`] on the copies it promoted once a data-plane binary
/// accepted them. Accepted Secrets are never built, so orphan deletion must skip them.
pub const CONFIG_SET_LABEL: &str = "logging.sluice.dev/config-set";
pub const CONFIG_SET_CANDIDATE: &str = "candidate";
pub const CONFIG_SET_ACCEPTED: &str = "accepted";

/// Key names inside the TLS Secrets, in the cert-manager format.
pub const CA_CERT_KEY: &str = "ca.crt";
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";
/// Key of the CA's private key inside the CA Secret (never mounted into a pod).
pub const CA_KEY_KEY: &str = "ca.key";
/// Key of the shared key inside the shared-key Secret.
pub const SHARED_KEY_KEY: &str = "shared-key";
/// Keys of the CA Secret during a CA rotation: the CA being introduced (with its key), and
/// the CA being retired (certificate only; it signs nothing any more).
pub const NEXT_CA_CERT_KEY: &str = "next-ca.crt";
pub const NEXT_CA_KEY_KEY: &str = "next-ca.key";
pub const PREVIOUS_CA_CERT_KEY: &str = "previous-ca.crt";
/// CA Secret annotations recording the CA rotation phase and since when it holds, so that a
/// restarted operator resumes a rotation where it stopped.
pub const CA_ROTATION_PHASE_ANNOTATION: &str = "logging.sluice.dev/ca-rotation-phase";
pub const CA_ROTATION_SINCE_ANNOTATION: &str = "logging.sluice.dev/ca-rotation-phase-since";

/// Names of everything Sluice creates for one Logging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub logging: String,
    pub control_namespace: String,
}

impl Names {
    pub fn new(logging: &str, control_namespace: &str) -> Self {
        Self {
            logging: logging.to_owned(),
            control_namespace: control_namespace.to_owned(),
        }
    }

    fn prefixed(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.logging)
    }

    pub fn agent(&self) -> String {
        self.prefixed("agent")
    }
    pub fn agent_config_secret(&self) -> String {
        self.prefixed("agent-config")
    }
    /// The agent's routing table index (not hashed into the pod template).
    pub fn agent_routes_secret(&self) -> String {
        self.prefixed("agent-routes")
    }
    /// Routing table slot `slot` (1..=[`AGGREGATOR_CONFIG_SLOTS`]): the flows of aggregator
    /// config slot `slot`.
    pub fn agent_routes_slot_secret(&self, slot: usize) -> String {
        self.prefixed(&format!("agent-routes-{slot:02}"))
    }
    /// Every Secret of the agent's routing table, index first.
    pub fn agent_routes_secrets(&self) -> Vec<String> {
        std::iter::once(self.agent_routes_secret())
            .chain((1..=AGGREGATOR_CONFIG_SLOTS).map(|slot| self.agent_routes_slot_secret(slot)))
            .collect()
    }
    pub fn aggregator(&self) -> String {
        self.prefixed("aggregator")
    }
    /// Headless Service governing the StatefulSet (per-pod DNS names).
    /// Headless Service of the agent pods: its DNS name lists their addresses, where the
    /// operator reads each reloader's status.
    pub fn agent_headless_service(&self) -> String {
        self.prefixed("agent-headless")
    }
    /// Where the operator finds the reloaders of a component: the headless Service's name.
    pub fn reloader_host(&self, component: &str) -> String {
        let service = if component == AGGREGATOR_COMPONENT {
            self.aggregator_headless_service()
        } else {
            self.agent_headless_service()
        };
        format!("{service}.{}.svc", self.control_namespace)
    }
    pub fn aggregator_headless_service(&self) -> String {
        self.prefixed("aggregator-headless")
    }
    /// The main Secret of the aggregator's candidate bundle (`fluent.conf`, the manifest).
    pub fn aggregator_config_secret(&self) -> String {
        self.prefixed("aggregator-config")
    }
    /// Aggregator config slot `slot` (1..=[`AGGREGATOR_CONFIG_SLOTS`]) of the candidate bundle.
    pub fn aggregator_config_slot_secret(&self, slot: usize) -> String {
        self.prefixed(&format!("aggregator-config-{slot:02}"))
    }
    /// Output credentials of the candidate aggregator bundle, content-addressed file names.
    pub fn aggregator_credentials_secret(&self) -> String {
        self.prefixed("aggregator-credentials")
    }
    /// The Secrets of one component's candidate bundle; the first holds the manifest and is
    /// applied last, once every file it names is in place.
    pub fn candidate_bundle_secrets(&self, component: &str) -> Vec<String> {
        if component == AGGREGATOR_COMPONENT {
            let mut names = vec![self.aggregator_config_secret()];
            names.extend(
                (1..=AGGREGATOR_CONFIG_SLOTS).map(|slot| self.aggregator_config_slot_secret(slot)),
            );
            names.push(self.aggregator_credentials_secret());
            names
        } else {
            vec![self.agent_config_secret()]
        }
    }
    /// The accepted counterpart of a candidate bundle Secret: `-config` becomes `-accepted`,
    /// `-credentials` becomes `-accepted-credentials`. `None` for any other Secret.
    pub fn accepted_secret(&self, candidate: &str) -> Option<String> {
        let rest = candidate.strip_prefix(&format!("{}-", self.logging))?;
        let accepted = match rest {
            "agent-config" => "agent-accepted".to_owned(),
            "aggregator-config" => "aggregator-accepted".to_owned(),
            "aggregator-credentials" => "aggregator-accepted-credentials".to_owned(),
            _ => {
                let slot = rest.strip_prefix("aggregator-config-")?;
                let number: usize = slot.parse().ok()?;
                if slot.len() != 2 || !(1..=AGGREGATOR_CONFIG_SLOTS).contains(&number) {
                    return None;
                }
                format!("aggregator-accepted-{slot}")
            }
        };
        Some(self.prefixed(&accepted))
    }
    pub fn ca_secret(&self) -> String {
        self.prefixed("ca")
    }
    pub fn aggregator_tls_secret(&self) -> String {
        self.prefixed("aggregator-tls")
    }
    pub fn agent_tls_secret(&self) -> String {
        self.prefixed("agent-tls")
    }
    pub fn shared_key_secret(&self) -> String {
        self.prefixed("shared-key")
    }
    /// The host directory of the agents' tail positions and buffers: `spec.agent.stateHostPath`,
    /// by default one per Logging name.
    pub fn agent_state_host_path(&self, spec: &crate::api::LoggingSpec) -> String {
        spec.agent
            .as_ref()
            .and_then(|agent| agent.state_host_path.clone())
            .unwrap_or_else(|| format!("/var/lib/sluice/{}", self.logging))
    }

    /// DNS names the aggregator's server certificate must cover: the Service and headless
    /// Service in short, namespaced, `svc` and fully qualified form, plus a wildcard for the
    /// headless per-pod names.
    pub fn aggregator_dns_names(&self) -> Vec<String> {
        let ns = &self.control_namespace;
        let mut names = Vec::new();
        for service in [self.aggregator(), self.aggregator_headless_service()] {
            names.push(service.clone());
            names.push(format!("{service}.{ns}"));
            names.push(format!("{service}.{ns}.svc"));
            names.push(format!("{service}.{ns}.svc.{CLUSTER_DOMAIN}"));
        }
        let headless = self.aggregator_headless_service();
        names.push(format!("*.{headless}.{ns}.svc"));
        names.push(format!("*.{headless}.{ns}.svc.{CLUSTER_DOMAIN}"));
        names
    }

    /// The name agents dial and verify: the aggregator Service's `svc` name.
    pub fn aggregator_host(&self) -> String {
        format!("{}.{}.svc", self.aggregator(), self.control_namespace)
    }

    /// Labels on every object Sluice creates for this Logging. Deliberately no
    /// `app.kubernetes.io/instance`: Argo CD uses it for tracking and would prune our children.
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "sluice".to_owned()),
            (
                "app.kubernetes.io/component".to_owned(),
                component.to_owned(),
            ),
            (
                "app.kubernetes.io/managed-by".to_owned(),
                MANAGED_BY.to_owned(),
            ),
            (LOGGING_LABEL.to_owned(), self.logging.clone()),
        ])
    }

    /// Pod selector labels: stable forever, since selectors are immutable.
    pub fn selector_labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "sluice".to_owned()),
            (
                "app.kubernetes.io/component".to_owned(),
                component.to_owned(),
            ),
            (LOGGING_LABEL.to_owned(), self.logging.clone()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_candidate_bundle_secret_has_an_accepted_counterpart() {
        let names = Names::new("main", "sluice-system");
        for component in [AGENT_COMPONENT, AGGREGATOR_COMPONENT] {
            let candidates = names.candidate_bundle_secrets(component);
            let accepted: Vec<_> = candidates
                .iter()
                .map(|c| names.accepted_secret(c).unwrap_or_default())
                .collect();
            assert!(
                accepted.iter().all(|a| a.contains("-accepted")),
                "{accepted:?}"
            );
            let unique: std::collections::BTreeSet<_> =
                accepted.iter().chain(&candidates).collect();
            assert_eq!(unique.len(), 2 * candidates.len());
        }
        assert_eq!(
            names.candidate_bundle_secrets(AGGREGATOR_COMPONENT).len(),
            34
        );
        assert_eq!(
            names
                .accepted_secret("main-aggregator-config-07")
                .as_deref(),
            Some("main-aggregator-accepted-07")
        );
        for foreign in [
            "main-ca",
            "other-aggregator-config",
            "main-aggregator-config-33",
            "main-aggregator-config-7",
        ] {
            assert_eq!(names.accepted_secret(foreign), None, "{foreign}");
        }
    }
}
