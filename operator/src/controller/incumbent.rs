//! Read-only listing of logging-operator's objects for `sluice migrate --kubeconfig`: only
//! `list` on its kinds and on Namespaces, never Secrets, never a write.

use std::path::Path;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};

/// logging-operator's kinds `sluice migrate` reads, as kind and plural.
const KINDS: [(&str, &str); 8] = [
    ("Logging", "loggings"),
    ("FluentbitAgent", "fluentbitagents"),
    ("FluentdConfig", "fluentdconfigs"),
    ("LoggingRoute", "loggingroutes"),
    ("ClusterOutput", "clusteroutputs"),
    ("ClusterFlow", "clusterflows"),
    ("Output", "outputs"),
    ("Flow", "flows"),
];

/// Every object of logging-operator's kinds in `api_version` (`group/version`) and every
/// Namespace, each as a document with `apiVersion`, `kind`, `metadata` and (for the
/// logging-operator kinds) `spec`. A kind whose CRD is not installed is skipped.
pub async fn list(kubeconfig: &Path, api_version: &str) -> Result<Vec<serde_json::Value>, String> {
    let client = super::client(Some(kubeconfig))
        .await
        .map_err(|e| e.to_string())?;
    let (group, version) = api_version.split_once('/').unwrap_or_default();
    let mut documents = Vec::new();
    for (kind, plural) in KINDS {
        let resource = ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
        };
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let list = match api.list(&ListParams::default()).await {
            Ok(list) => list,
            // The kind's CRD is not installed (an older logging-operator).
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(e) => return Err(format!("listing {plural}.{group}: {e}")),
        };
        for item in list.items {
            documents.push(serde_json::json!({
                "apiVersion": api_version,
                "kind": kind,
                "metadata": item.metadata,
                "spec": item.data.get("spec").cloned().unwrap_or_default(),
            }));
        }
    }
    let namespaces: Api<Namespace> = Api::all(client);
    let list = namespaces
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing namespaces: {e}"))?;
    for namespace in list.items {
        documents.push(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": namespace.metadata,
        }));
    }
    Ok(documents)
}
