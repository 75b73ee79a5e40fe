//! `sluice render` on bad input: a message naming file, object and field, a non-zero exit,
//! and nothing printed to standard output.

use std::path::Path;
use std::process::{Command, Output};

const LOGGING: &str = r#"
apiVersion: logging.sluice.dev/v1alpha1
kind: Logging
metadata:
  name: main
spec:
  controlNamespace: logging
"#;

const TEAM: &str = r#"
apiVersion: logging.sluice.dev/v1alpha1
kind: Flow
metadata:
  name: web
  namespace: team-a
spec:
  match:
    - select:
        labels: {app: web}
  localOutputRefs: [sink]
---
apiVersion: logging.sluice.dev/v1alpha1
kind: Output
metadata:
  name: sink
  namespace: team-a
spec:
  nullOutput: {}
"#;

fn render(files: &[(&str, &str)]) -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["render", "--now", "2026-11-22T00:00:00Z", "-f"])
        .arg(dir.path())
        .output()
        .unwrap();
    (dir, output)
}

/// Asserts a failed render whose error output contains every fragment.
fn assert_fails_with(files: &[(&str, &str)], fragments: &[&str]) {
    let (_dir, output) = render(files);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "render succeeded; stderr: {stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "printed half a result: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    for fragment in fragments {
        assert!(
            stderr.contains(fragment),
            "missing {fragment:?} in:\n{stderr}"
        );
    }
}

#[test]
fn the_valid_baseline_renders() {
    let (_dir, output) = render(&[("logging.yaml", LOGGING), ("team.yaml", TEAM)]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("kind: DaemonSet"));
}

#[test]
fn unknown_field() {
    let team = TEAM.replace("labels: {app: web}", "lables: {app: web}");
    assert_fails_with(
        &[("logging.yaml", LOGGING), ("team.yaml", &team)],
        &[
            "team.yaml:",
            "document 1",
            "Flow team-a/web",
            "spec.match[0].select",
            "unknown field \"lables\"",
        ],
    );
}

#[test]
fn select_and_exclude_in_one_entry() {
    let team = TEAM.replace(
        "        labels: {app: web}\n",
        "        labels: {app: web}\n      exclude:\n        hosts: [node-1]\n",
    );
    assert_fails_with(
        &[("logging.yaml", LOGGING), ("team.yaml", &team)],
        &[
            "team.yaml:",
            "Flow team-a/web",
            "spec.match[0]",
            "exactly one of select or exclude",
        ],
    );
}

#[test]
fn two_output_kinds() {
    let team = TEAM.replace("  nullOutput: {}", "  nullOutput: {}\n  stdout: {}");
    assert_fails_with(
        &[("logging.yaml", LOGGING), ("team.yaml", &team)],
        &[
            "team.yaml:",
            "document 2",
            "Output team-a/sink",
            "spec",
            "exactly one output kind",
        ],
    );
}

#[test]
fn dangling_output_reference() {
    let team = TEAM.replace(
        "localOutputRefs: [sink]",
        "localOutputRefs: [sink, missing]",
    );
    assert_fails_with(
        &[("logging.yaml", LOGGING), ("team.yaml", &team)],
        &[
            "Flow team-a/web",
            "spec.localOutputRefs[1]",
            "Output team-a/missing does not exist",
        ],
    );
}

#[test]
fn protected_cluster_output_referenced_by_a_flow() {
    let protected = r#"
apiVersion: logging.sluice.dev/v1alpha1
kind: ClusterOutput
metadata:
  name: siem
spec:
  protected: true
  stdout: {}
"#;
    let team = TEAM.replace(
        "localOutputRefs: [sink]",
        "localOutputRefs: [sink]\n  globalOutputRefs: [siem]",
    );
    assert_fails_with(
        &[
            ("logging.yaml", LOGGING),
            ("siem.yaml", protected),
            ("team.yaml", &team),
        ],
        &[
            "team.yaml:",
            "Flow team-a/web",
            "spec.globalOutputRefs[0]",
            "ClusterOutput siem is protected",
        ],
    );
}

#[test]
fn output_secret_missing() {
    let team = TEAM.replace(
        "  nullOutput: {}",
        "  http:\n    endpoint: https://collector.example.com\n    basicAuth:\n      username: u\n      passwordSecretRef: {name: creds, key: password}",
    );
    assert_fails_with(
        &[("logging.yaml", LOGGING), ("team.yaml", &team)],
        &[
            "Output team-a/sink",
            "spec.http.basicAuth.passwordSecretRef",
            "Secret team-a/creds does not exist",
        ],
    );
}

#[test]
fn output_secret_key_missing() {
    let team = TEAM.replace(
        "  nullOutput: {}",
        "  http:\n    endpoint: https://collector.example.com\n    basicAuth:\n      username: u\n      passwordSecretRef: {name: creds, key: password}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: team-a}\nstringData: {passwd: x}",
    );
    assert_fails_with(
        &[("logging.yaml", LOGGING), ("team.yaml", &team)],
        &[
            "Output team-a/sink",
            "spec.http.basicAuth.passwordSecretRef",
            "Secret team-a/creds has no key \"password\"",
        ],
    );
}

#[test]
fn wrong_control_namespace() {
    let logging = LOGGING.replace("controlNamespace: logging", "controlNamespace: Logging_NS");
    assert_fails_with(
        &[("logging.yaml", &logging), ("team.yaml", TEAM)],
        &[
            "logging.yaml:",
            "Logging main",
            "spec.controlNamespace",
            "not a valid namespace name",
        ],
    );
}

#[test]
fn two_loggings_share_a_control_namespace() {
    let second = LOGGING.replace("name: main", "name: second");
    assert_fails_with(
        &[("a.yaml", LOGGING), ("b.yaml", &second)],
        &[
            "b.yaml:",
            "Logging second",
            "spec.controlNamespace",
            "already the control namespace of Logging \"main\"",
        ],
    );
}

#[test]
fn duplicate_names() {
    let flow_again = TEAM.split("---").next().unwrap().to_owned();
    assert_fails_with(
        &[
            ("logging.yaml", LOGGING),
            ("team.yaml", TEAM),
            ("zz-again.yaml", &flow_again),
        ],
        &[
            "zz-again.yaml:",
            "Flow team-a/web",
            "metadata.name",
            "defined twice (first at",
            "team.yaml",
        ],
    );
}

#[test]
fn yaml_syntax_error_with_line() {
    let broken = format!("{LOGGING}---\nkind: Flow\nmetadata: {{name: [unclosed\n");
    assert_fails_with(
        &[("logging.yaml", &broken)],
        &[
            "logging.yaml:",
            "document 2",
            "YAML syntax error",
            "line 10",
        ],
    );
}

#[test]
fn empty_input() {
    assert_fails_with(
        &[("empty.yaml", "# nothing here\n")],
        &["no Sluice resources found in"],
    );
}

#[test]
fn no_logging() {
    assert_fails_with(&[("team.yaml", TEAM)], &["no Logging found"]);
}

#[test]
fn namespaced_kind_without_namespace() {
    let team = TEAM.replacen("  namespace: team-a\n", "", 1);
    assert_fails_with(
        &[("logging.yaml", LOGGING), ("team.yaml", &team)],
        &["team.yaml:", "Flow web", "metadata.namespace", "required"],
    );
}

#[test]
fn not_a_sluice_resource() {
    let other = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x, namespace: apps}\n";
    assert_fails_with(
        &[("logging.yaml", LOGGING), ("other.yaml", other)],
        &[
            "other.yaml:",
            "Deployment apps/x",
            "kind",
            "not a Sluice resource",
        ],
    );
}

#[test]
fn wrong_type_names_the_field() {
    let logging = LOGGING.replace(
        "controlNamespace: logging",
        "controlNamespace: logging\n  aggregator:\n    replicas: many",
    );
    assert_fails_with(
        &[("logging.yaml", &logging)],
        &["logging.yaml:", "Logging main", "spec.aggregator.replicas"],
    );
}

#[test]
fn missing_file_is_reported() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["render", "-f"])
        .arg(Path::new("/nonexistent/sluice.yaml"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/sluice.yaml: "));
}

#[test]
fn record_key_that_cannot_be_a_config_key() {
    let team = TEAM.replace(
        "  localOutputRefs: [sink]",
        "  filters:\n    - recordTransformer:\n        records:\n          \"bad key\": x\n  localOutputRefs: [sink]",
    );
    assert_fails_with(
        &[("logging.yaml", LOGGING), ("team.yaml", &team)],
        &[
            "Flow team-a/web",
            "spec.filters[0].recordTransformer.records",
            "\"bad key\" is not a plain record key",
        ],
    );
}
