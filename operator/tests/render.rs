//! `sluice render` on the shipped examples: deterministic for the same input and the same
//! certificate material, and the chains it prints verify with openssl.

use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn render(now: &str, pki_from: Option<&Path>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command.args(["render", "--now", now, "-f"]).arg(examples());
    if let Some(path) = pki_from {
        command.arg("--pki-from").arg(path);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn same_input_and_material_render_byte_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let first = render("2026-11-22T00:00:00Z", None);
    let previous = dir.path().join("previous.yaml");
    std::fs::write(&previous, &first).unwrap();
    assert_eq!(render("2026-11-22T00:00:00Z", Some(&previous)), first);
    // A month later nothing is due yet either.
    assert_eq!(render("2026-12-22T00:00:00Z", Some(&previous)), first);
    // Without the earlier material, fresh keys are minted.
    assert_ne!(render("2026-11-22T00:00:00Z", None), first);
}

#[test]
fn rendered_output_holds_every_object_the_operator_creates() {
    let output = render("2026-11-22T00:00:00Z", None);
    let objects: Vec<serde_json::Value> = serde_saphyr::from_multiple(&output).unwrap();
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    for expected in [
        "DaemonSet main-agent",
        "Namespace sluice-system",
        "PodDisruptionBudget main-aggregator",
        "Secret main-agent-config",
        "Secret main-agent-tls",
        "Secret main-aggregator-config",
        "Secret main-aggregator-credentials",
        "Secret main-aggregator-config-01",
        "Secret main-aggregator-config-32",
        "Secret main-agent-routes",
        "Secret main-aggregator-tls",
        "Secret main-ca",
        "Secret main-shared-key",
        "Service main-aggregator",
        "Service main-aggregator-headless",
        "ServiceAccount sluice-agent",
        "ServiceAccount main-aggregator",
        "StatefulSet main-aggregator",
    ] {
        assert!(
            kinds.contains(&expected.to_owned()),
            "missing {expected}; got {kinds:?}"
        );
    }
    // The agents' ClusterRoleBindings come with the install: the operator creates no
    // cluster-scoped RBAC.
    assert!(
        !kinds.iter().any(|k| k.starts_with("ClusterRole")),
        "{kinds:?}"
    );
}

fn secret_file(objects: &[serde_json::Value], name: &str, key: &str, dir: &Path) -> PathBuf {
    use base64::Engine;
    let secret = objects
        .iter()
        .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == name)
        .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret["data"][key].as_str().unwrap())
        .unwrap();
    let path = dir.join(format!("{name}-{key}"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn rendered_chains_verify_with_openssl() {
    if Command::new("openssl").arg("version").output().is_err() {
        panic!("the openssl binary is needed (.ci/run installs it)");
    }
    let objects: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&render("2026-11-22T00:00:00Z", None)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (secret, purpose) in [
        ("main-aggregator-tls", "sslserver"),
        ("main-agent-tls", "sslclient"),
    ] {
        let bundle = secret_file(&objects, secret, "ca.crt", dir.path());
        let leaf = secret_file(&objects, secret, "tls.crt", dir.path());
        let output = Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(&bundle)
            .arg(&leaf)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{secret}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
