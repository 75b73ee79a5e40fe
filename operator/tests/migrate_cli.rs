//! `sluice migrate` end to end, through the real binary: the multi-team logging-operator
//! fixture (operator/tests/fixtures/logging-operator, 30 objects) converts, the result
//! renders with `sluice render` and explains the same routes; malformed input fails naming
//! file, object and field.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/logging-operator")
}

fn sluice(args: &[&str], extra: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(extra)
        .output()
        .expect("runs sluice")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The report without the fixture's absolute path, so it is the same on every machine.
fn stable(report: &str) -> String {
    report.replace(&format!("{}/", fixture().display()), "")
}

#[test]
fn the_multi_team_fixture_converts_renders_and_routes_the_same() {
    let out = tempfile::tempdir().unwrap();
    let migrated = sluice(
        &["migrate", "--out"],
        &[out.path(), Path::new("-f"), &fixture()],
    );
    // Something of the fixture does not carry (the aggregator's logLevel): exit 2, but
    // everything is written.
    assert_eq!(migrated.status.code(), Some(2), "{}", stderr(&migrated));
    let report = std::fs::read_to_string(out.path().join("migration-report.txt")).unwrap();
    assert!(
        report.contains("objects: 30 logging-operator objects read"),
        "{report}"
    );
    assert!(
        report.contains("every one routed to the same flows and outputs"),
        "{report}"
    );
    assert!(!report.contains("\nDIFFERS ("), "{report}");
    assert!(
        report.contains("result: 1 field(s) NOT CONVERTED, 0 record class(es)"),
        "{report}"
    );
    assert!(stderr(&migrated).contains("every one routed to the same flows and outputs"));
    let mut files: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "_cluster.yaml",
            "migration-report.txt",
            "team-data.yaml",
            "team-ml.yaml",
            "team-payments.yaml",
            "team-web.yaml"
        ]
    );
    insta::assert_snapshot!("fixture_report", stable(&report));
    insta::assert_snapshot!(
        "fixture_cluster_objects",
        stable(&std::fs::read_to_string(out.path().join("_cluster.yaml")).unwrap())
    );

    // What the operator would run for the result: no problem anywhere.
    let namespaces = fixture().join("00-namespaces.yaml");
    let secrets = fixture().join("90-secrets.yaml");
    let rendered = sluice(
        &["render", "--now", "2026-11-22T00:00:00Z", "-f"],
        &[out.path(), &namespaces, &secrets],
    );
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    assert!(
        String::from_utf8_lossy(&rendered.stdout).contains("name: main-aggregator"),
        "the render holds the aggregator"
    );

    // `sluice explain` on the result names what logging-operator's rules give.
    let explain = |namespace: &str, labels: &str, container: &str| {
        let output = sluice(
            &[
                "explain",
                "--namespace",
                namespace,
                "--labels",
                labels,
                "--container",
                container,
                "-f",
            ],
            &[out.path(), &namespaces, &secrets],
        );
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let api = explain("team-payments", "app=payments-api", "api");
    assert!(
        api.contains("Flow team-payments/payments-api: takes it"),
        "{api}"
    );
    assert!(api.contains("ClusterFlow prod-to-loki: takes it"), "{api}");
    assert!(api.contains("=> 2 flow(s) take the record"), "{api}");
    // The exclude-only Flow takes nothing, as in logging-operator; `everything` takes it.
    let web = explain("team-web", "app=web", "web");
    assert!(
        web.contains("Flow team-web/debug: does not take it"),
        "{web}"
    );
    assert!(web.contains("Flow team-web/everything: takes it"), "{web}");
    // Nobody's records go to the default flow: archive.
    let sandbox = explain("sandbox", "", "shell");
    assert!(sandbox.contains("the default flow does."), "{sandbox}");
    assert!(sandbox.contains("-> ClusterOutput archive"), "{sandbox}");

    // --allow-partial accepts the loss.
    let partial = sluice(
        &["migrate", "--allow-partial", "--out"],
        &[out.path(), Path::new("-f"), &fixture()],
    );
    assert_eq!(partial.status.code(), Some(0), "{}", stderr(&partial));
}

#[test]
fn without_out_the_objects_go_to_stdout_and_the_report_to_stderr() {
    let output = sluice(
        &["migrate", "--allow-partial", "-f"],
        &[&fixture().join("01-logging.yaml")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("# file: _cluster.yaml\n"), "{stdout}");
    assert!(stdout.contains("kind: Logging"), "{stdout}");
    assert!(stderr(&output).starts_with("# sluice migrate report"));
}

#[test]
fn malformed_input_names_file_object_and_field_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("flows.yaml");
    std::fs::write(
        &source,
        "apiVersion: logging.banzaicloud.io/v1beta1\nkind: Flow\nmetadata:\n  name: web\n  namespace: team-a\nspec:\n  match:\n    - select:\n        labels: [app, web]\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let output = sluice(&["migrate", "--out"], &[&out, Path::new("-f"), &source]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    for fragment in [
        "flows.yaml:9 (document 1)",
        "Flow team-a/web",
        "spec.match[0].select.labels",
        "must be a mapping of strings, not a list",
    ] {
        assert!(text.contains(fragment), "missing {fragment:?} in {text}");
    }
    assert!(!out.exists(), "nothing is written for bad input");
    assert!(output.stdout.is_empty());

    // A YAML syntax error: file, line and column.
    std::fs::write(&source, "kind: Flow\nspec: [\n").unwrap();
    let output = sluice(&["migrate", "-f"], &[&source]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("flows.yaml:1 (document 1): YAML syntax error: line "),
        "{}",
        stderr(&output)
    );

    // A Flow without its namespace.
    std::fs::write(
        &source,
        "apiVersion: logging.banzaicloud.io/v1beta1\nkind: Flow\nmetadata:\n  name: web\n",
    )
    .unwrap();
    let output = sluice(&["migrate", "-f"], &[&source]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("Flow web: metadata.namespace: required"),
        "{}",
        stderr(&output)
    );
}
