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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use sluice::api::{Flow, Logging};
use sluice::controller::{Options, Settings};

const MANAGER: &str = "sluice-e2e";
const CONTROL: &str = "logging";
const TIMEOUT: Duration = Duration::from_secs(180);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Every YAML document of every `.yaml` file in `dir` (or the file itself), in name order.
fn documents(path: &Path) -> Result<Vec<Value>> {
    let mut files = if path.is_dir() {
        std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect()
    } else {
        vec![path.to_owned()]
    };
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let parsed: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
        docs.extend(parsed.into_iter().filter(|d| d.is_object()));
    }
    Ok(docs)
}

/// Server-side applies documents, Namespaces first, creating the namespaces they live in.
async fn apply_documents(client: &Client, docs: &[Value]) -> Result<()> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut namespaces: Vec<String> = docs
        .iter()
        .filter_map(|d| d["metadata"]["namespace"].as_str().map(str::to_owned))
        .collect();
    namespaces.sort();
    namespaces.dedup();
    let ns_api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()),
    );
    for ns in namespaces {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        ns_api
            .patch(
                &ns,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await?;
    }
    let mut ordered: Vec<&Value> = docs.iter().collect();
    ordered.sort_by_key(|d| match d["kind"].as_str() {
        Some("Namespace") => 0,
        Some("Secret") => 1,
        _ => 2,
    });
    for doc in ordered {
        let object: DynamicObject = serde_json::from_value(doc.clone())?;
        let types = object
            .types
            .clone()
            .context("document without apiVersion/kind")?;
        let gvk = GroupVersionKind::try_from(&types)?;
        let (resource, caps) = discovery
            .resolve_gvk(&gvk)
            .ok_or_else(|| anyhow!("unknown kind {gvk:?}: are the CRDs installed?"))?;
        let api: Api<DynamicObject> = match (caps.scope, object.namespace()) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), &ns, &resource),
            (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &resource),
            (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
        };
        api.patch(
            &object.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(doc),
        )
        .await
        .with_context(|| format!("applying {gvk:?} {}", object.name_any()))?;
    }
    Ok(())
}

async fn install_crds(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for doc in documents(&repo("crds"))? {
        let crd: CustomResourceDefinition = serde_json::from_value(doc.clone())?;
        api.patch(
            &crd.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&doc),
        )
        .await?;
        let name = crd.name_any();
        wait_for(&format!("CRD {name} established"), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await?;
                Ok(crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True"))
            }
        })
        .await?;
    }
    Ok(())
}

/// Polls until `check` is true.
async fn wait_for<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) => eprintln!("waiting for {what}: {error}"),
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn start_operator() -> tokio::task::JoinHandle<()> {
    let options = Options {
        // KUBECONFIG (possibly a list) is read by the default inference.
        kubeconfig: None,
        listen: ([127, 0, 0, 1], 0).into(),
        lease: None,
        identity: "e2e".to_owned(),
        control_namespaces: vec![CONTROL.to_owned()],
        concurrency: 4,
        debounce: Duration::from_millis(500),
        settings: Settings::default(),
    };
    tokio::spawn(async move {
        if let Err(error) = sluice::controller::run(options).await {
            eprintln!("operator stopped: {error}");
        }
    })
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

/// resourceVersions of everything whose change would be a write by Sluice at rest: its
/// children except the workloads (whose status the Kubernetes controllers write) and every
/// Sluice object (whose status Sluice writes).
async fn sluice_versions(client: &Client) -> Result<BTreeMap<String, String>> {
    let selector = sluice::controller::watches::children_selector();
    let mut versions = BTreeMap::new();
    let mut add = |kind: &str, items: Vec<(String, Option<String>)>| {
        for (name, rv) in items {
            versions.insert(format!("{kind} {name}"), rv.unwrap_or_default());
        }
    };
    let lp = ListParams::default().labels(&selector);
    let secrets = Api::<Secret>::namespaced(client.clone(), CONTROL)
        .list(&lp)
        .await?;
    add(
        "Secret",
        secrets
            .items
            .iter()
            .map(|s| (s.name_any(), s.resource_version()))
            .collect(),
    );
    let services = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), CONTROL)
        .list(&lp)
        .await?;
    add(
        "Service",
        services
            .items
            .iter()
            .map(|s| (s.name_any(), s.resource_version()))
            .collect(),
    );
    let loggings = Api::<Logging>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    add(
        "Logging",
        loggings
            .items
            .iter()
            .map(|l| (l.name_any(), l.resource_version()))
            .collect(),
    );
    let flows = Api::<Flow>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    add(
        "Flow",
        flows
            .items
            .iter()
            .map(|f| {
                (
                    format!("{}/{}", f.namespace().unwrap_or_default(), f.name_any()),
                    f.resource_version(),
                )
            })
            .collect(),
    );
    Ok(versions)
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster in KUBECONFIG"]
async fn examples_end_to_end() -> Result<()> {
    let client = Client::try_default().await?;
    install_crds(&client).await?;
    apply_documents(
        &client,
        &documents(&repo("deploy/rbac/agent-clusterroles.yaml"))?,
    )
    .await?;
    let operator = start_operator();
    let examples = documents(&repo("examples"))?;
    apply_documents(&client, &examples).await?;

    // Every object `sluice render` prints for the examples appears, owned by the Logging.
    let logging = Api::<Logging>::all(client.clone()).get("main").await?;
    let uid = logging.uid().context("Logging without uid")?;
    let loaded = sluice::cli::input::load(&[repo("examples")]).map_err(|e| anyhow!("{e:?}"))?;
    let mut inventory = loaded.inventory;
    for l in &mut inventory.loggings {
        l.metadata.uid = Some(uid.clone());
    }
    let resolution = sluice::model::resolve(&inventory);
    let pipeline = resolution
        .pipelines
        .iter()
        .find(|p| p.logging == "main")
        .context("examples resolve to no pipeline")?;
    let existing = BTreeMap::new();
    let plan = sluice::pki::plan(&sluice::pki::PkiRequest {
        names: &pipeline.names,
        tls: &pipeline.spec.tls_or_default(),
        now: jiff::Timestamp::now(),
        existing: &existing,
    });
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
            let namespaced = namespaced;
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
    for flow in &inventory.flows {
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
    let healthy = inventory.flows.first().context("examples have no Flow")?;
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
    operator.abort();
    Ok(())
}
