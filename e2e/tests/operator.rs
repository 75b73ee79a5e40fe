//! End-to-end: the operator, run in-process, against the cluster `KUBECONFIG` points at.
//!
//! Every test is `#[ignore]`d so `cargo test --workspace` only compiles them. Run with a
//! disposable cluster (kind, k3d):
//!
//! ```sh
//! kind create cluster
//! cargo test -p e2e -- --ignored --test-threads=1 --nocapture
//! ```
//!
//! The test installs the CRDs from `crds/` and the agent ClusterRoles, applies `examples/`,
//! and cleans up the Logging at the end (the deletion cascade is one of the assertions).
//! The data-plane pods copy their config reloader from the operator's image
//! (`ghcr.io/sluice-dev/sluice:<version>`): build and load it as docs/install.md shows, or
//! they stay in `Init`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use e2e::{apply_documents, documents, install_crds, repo, wait_for};
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use sluice::api::{Flow, Logging};
use sluice::controller::{ControlNamespaces, Options, Settings};

const CONTROL: &str = "sluice-system";

/// Runs the operator in-process; send on the returned channel to stop it gracefully.
fn start_operator(
    client: Client,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let options = Options {
        kubeconfig: None,
        listen: ([127, 0, 0, 1], 0).into(),
        lease: None,
        identity: "e2e".to_owned(),
        control_namespaces: ControlNamespaces::Only(vec![CONTROL.to_owned()]),
        concurrency: 4,
        debounce: Duration::from_millis(500),
        settings: Settings::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = stopped.await;
        };
        if let Err(error) = sluice::controller::run_with(client, options, stop).await {
            eprintln!("operator stopped: {error}");
        }
    });
    (task, stop)
}

fn condition(status: &Value, type_: &str) -> Option<(String, String)> {
    status["conditions"].as_array()?.iter().find_map(|c| {
        (c["type"] == type_).then(|| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
    })
}

async fn flow_status(client: &Client, namespace: &str, name: &str) -> Result<Value> {
    let flow = Api::<Flow>::namespaced(client.clone(), namespace)
        .get(name)
        .await?;
    Ok(serde_json::to_value(flow.status)?)
}

/// `namespace/name` → resourceVersion of every listed object.
async fn versions_of<K>(api: Api<K>, params: &ListParams) -> Result<Vec<(String, String)>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api
        .list(params)
        .await?
        .items
        .iter()
        .map(|o| {
            (
                format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()),
                o.resource_version().unwrap_or_default(),
            )
        })
        .collect())
}

/// resourceVersions of everything whose change would be a write by Sluice at rest: its
/// children except the workloads (whose status the Kubernetes controllers write), and the
/// Flows and Outputs (whose status Sluice writes). The Logging is left out: its status
/// follows the workloads' (pods restarting in a small test cluster are real changes).
async fn sluice_versions(client: &Client) -> Result<BTreeMap<String, String>> {
    use k8s_openapi::api::core::v1::{Service, ServiceAccount};
    use sluice::api::{ClusterOutput, Output};
    let owned = ListParams::default().labels(&sluice::controller::watches::children_selector());
    let all = ListParams::default();
    let c = || client.clone();
    let groups = [
        (
            "Secret",
            versions_of(Api::<Secret>::namespaced(c(), CONTROL), &owned).await?,
        ),
        (
            "Service",
            versions_of(Api::<Service>::namespaced(c(), CONTROL), &owned).await?,
        ),
        (
            "ServiceAccount",
            versions_of(Api::<ServiceAccount>::namespaced(c(), CONTROL), &owned).await?,
        ),
        ("Flow", versions_of(Api::<Flow>::all(c()), &all).await?),
        ("Output", versions_of(Api::<Output>::all(c()), &all).await?),
        (
            "ClusterOutput",
            versions_of(Api::<ClusterOutput>::all(c()), &all).await?,
        ),
    ];
    Ok(groups
        .into_iter()
        .flat_map(|(kind, items)| {
            items
                .into_iter()
                .map(move |(name, rv)| (format!("{kind} {name}"), rv))
        })
        .collect())
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster in KUBECONFIG"]
async fn examples_end_to_end() -> Result<()> {
    let client = sluice::controller::client(None).await?;
    install_crds(&client).await?;
    apply_documents(&client, &documents(&repo("deploy/rbac/agent-rbac.yaml"))?).await?;
    let (operator, stop) = start_operator(client.clone());
    let examples = documents(&repo("examples"))?;
    apply_documents(&client, &examples).await?;

    // Every object `sluice render` prints for the examples appears, owned by the Logging.
    let logging = Api::<Logging>::all(client.clone()).get("main").await?;
    let uid = logging.uid().context("Logging without uid")?;
    let loaded = sluice::cli::input::load(&[repo("examples")]).map_err(|e| anyhow!("{e:?}"))?;
    let mut objects = loaded.objects;
    for l in &mut objects.loggings {
        l.metadata.uid = Some(uid.clone());
    }
    let resolution = sluice::model::resolve(&objects.inventory());
    let pipeline = resolution
        .pipelines
        .iter()
        .find(|p| p.logging == "main")
        .context("examples resolve to no pipeline")?;
    let existing = BTreeMap::new();
    let plan = (sluice::controller::context::Cores::default().plan)(&sluice::pki::PkiRequest {
        names: &pipeline.names,
        tls: &pipeline.spec.tls_or_default(),
        now: jiff::Timestamp::now(),
        existing: &existing,
        rollout: sluice::pki::Rollout::Unobserved,
    })?;
    let expected = sluice::build::objects(pipeline, &plan)?;
    for child in &expected {
        let (resource, namespaced) = sluice::controller::apply::api_resource(child.kind);
        let api: Api<DynamicObject> = match (namespaced, child.object.namespace()) {
            (true, Some(ns)) => Api::namespaced_with(client.clone(), &ns, &resource),
            _ => Api::all_with(client.clone(), &resource),
        };
        let name = child.object.name_any();
        wait_for(&format!("{:?} {name}", child.kind), || {
            let api = api.clone();
            let name = name.clone();
            let uid = uid.clone();
            async move {
                let Some(object) = api.get_opt(&name).await? else {
                    return Ok(false);
                };
                let owned = object.owner_references().iter().any(|o| o.uid == uid);
                Ok(owned || !namespaced)
            }
        })
        .await?;
    }

    // Status: observedGeneration and every Logging condition; every example Flow Ready.
    wait_for("Logging status", || {
        let client = client.clone();
        async move {
            let logging = Api::<Logging>::all(client).get("main").await?;
            let status = serde_json::to_value(&logging.status)?;
            let types = [
                "Ready",
                "Degraded",
                "Warning",
                "CertificatesReady",
                "AgentReady",
                "AggregatorReady",
            ];
            Ok(
                status["observedGeneration"].as_i64() == logging.metadata.generation
                    && types.iter().all(|t| condition(&status, t).is_some()),
            )
        }
    })
    .await?;
    for flow in &objects.flows {
        let (ns, name) = (flow.namespace().unwrap_or_default(), flow.name_any());
        wait_for(&format!("Flow {ns}/{name} Ready"), || {
            let client = client.clone();
            let (ns, name) = (ns.clone(), name.clone());
            async move {
                let status = flow_status(&client, &ns, &name).await?;
                Ok(condition(&status, "Ready").is_some_and(|(s, _)| s == "True"))
            }
        })
        .await?;
    }

    // Quiet at rest: once settled, nothing Sluice writes changes for a while.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = sluice_versions(&client).await?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = sluice_versions(&client).await?;
    let changed: Vec<&String> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    assert!(changed.is_empty(), "written at rest: {changed:?}");

    // A broken Flow degrades only itself.
    let healthy = objects.flows.first().context("examples have no Flow")?;
    let team = healthy.namespace().unwrap_or_default();
    apply_documents(
        &client,
        &[json!({
            "apiVersion": "logging.sluice.dev/v1alpha1",
            "kind": "Flow",
            "metadata": {"name": "e2e-broken", "namespace": team},
            "spec": {"localOutputRefs": ["does-not-exist"]}
        })],
    )
    .await?;
    wait_for("broken Flow Degraded", || {
        let client = client.clone();
        let team = team.clone();
        async move {
            let status = flow_status(&client, &team, "e2e-broken").await?;
            Ok(condition(&status, "Degraded").is_some_and(|(s, _)| s == "True"))
        }
    })
    .await?;
    let status = flow_status(&client, &team, &healthy.name_any()).await?;
    assert_eq!(
        condition(&status, "Ready").map(|(s, _)| s),
        Some("True".to_owned()),
        "a healthy Flow was affected by a broken one: {status}"
    );
    Api::<Flow>::namespaced(client.clone(), &team)
        .delete("e2e-broken", &DeleteParams::default())
        .await?;

    // Deleting the Logging removes what it owns (garbage collection via owner references).
    Api::<Logging>::all(client.clone())
        .delete("main", &DeleteParams::foreground())
        .await?;
    wait_for("agent DaemonSet deleted", || {
        let client = client.clone();
        async move {
            Ok(Api::<DaemonSet>::namespaced(client, CONTROL)
                .get_opt("main-agent")
                .await?
                .is_none())
        }
    })
    .await?;
    wait_for("aggregator StatefulSet deleted", || {
        let client = client.clone();
        async move {
            Ok(Api::<StatefulSet>::namespaced(client, CONTROL)
                .get_opt("main-aggregator")
                .await?
                .is_none())
        }
    })
    .await?;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), operator).await??;
    Ok(())
}
