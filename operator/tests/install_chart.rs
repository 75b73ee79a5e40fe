//! charts/sluice, checked without Helm (the real engine renders it elsewhere): values.yaml
//! against values.schema.json, the CRDs byte-identical to crds/, every `.Values` path the
//! templates read present in values.yaml, the RBAC rules equal to deploy/rbac, and the
//! Deployment's flags accepted by the operator's own parser.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use sluice::controller::ControlNamespaces;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    root().join("charts/sluice")
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn values() -> Value {
    serde_saphyr::from_str(&read(chart().join("values.yaml"))).unwrap()
}

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&read(chart().join("values.schema.json"))).unwrap();
    jsonschema::draft7::new(&schema).unwrap_or_else(|e| panic!("values.schema.json: {e}"))
}

/// Every template, by file name.
fn templates() -> BTreeMap<String, String> {
    std::fs::read_dir(chart().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                read(p),
            )
        })
        .collect()
}

#[test]
fn values_yaml_validates_against_the_schema() {
    let validator = validator();
    let values = values();
    let errors: Vec<String> = validator
        .iter_errors(&values)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_schema_rejects_values_the_templates_cannot_use() {
    let validator = validator();
    let with = |path: &[&str], value: Value| {
        let mut values = values();
        let mut node = &mut values;
        for key in &path[..path.len() - 1] {
            node = &mut node[*key];
        }
        node[path[path.len() - 1]] = value;
        values
    };
    for (path, value) in [
        (&["logFormat"][..], json!("xml")),
        (&["controlNamespaces"], json!(["*", "logging"])),
        (&["controlNamespaces"], json!(["Not_A_Namespace"])),
        (&["image", "digest"], json!("latest")),
        (&["replicas"], json!(0)),
        (&["port"], json!("8080")),
        (&["imageTag"], json!("typo at the top level")),
        (&["metrics", "serviceMonitor", "interval"], json!("soon")),
    ] {
        assert!(
            !validator.is_valid(&with(path, value.clone())),
            "{path:?} = {value} accepted"
        );
    }
    // Two replicas without leader election would write concurrently.
    assert!(!validator.is_valid(&with(&["leaderElection", "enabled"], json!(false))));
    let mut single = with(&["leaderElection", "enabled"], json!(false));
    single["replicas"] = json!(1);
    assert!(validator.is_valid(&single));
    for namespaces in [json!([]), json!(["*"]), json!(["sluice-system", "logging"])] {
        assert!(validator.is_valid(&with(&["controlNamespaces"], namespaces)));
    }
}

#[test]
fn chart_crds_are_byte_identical_to_crds() {
    let names = |dir: PathBuf| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        names.sort();
        names
    };
    let ours = names(root().join("crds"));
    assert_eq!(
        names(chart().join("crds")),
        ours,
        "charts/sluice/crds holds exactly crds/*.yaml: cp crds/*.yaml charts/sluice/crds/"
    );
    for name in ours {
        assert!(
            read(root().join("crds").join(&name)) == read(chart().join("crds").join(&name)),
            "charts/sluice/crds/{name} differs from crds/{name}: cp crds/*.yaml charts/sluice/crds/"
        );
    }
    // Helm applies every file in crds/: nothing but CRDs may be there.
    let all = std::fs::read_dir(chart().join("crds")).unwrap().count();
    assert_eq!(all, names(chart().join("crds")).len());
}

#[test]
fn every_values_path_in_the_templates_exists() {
    let values = values();
    let pattern = regex::Regex::new(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)").unwrap();
    let mut used = 0;
    for (file, text) in templates() {
        for capture in pattern.captures_iter(&text) {
            used += 1;
            let path = &capture[1];
            let mut node = &values;
            for key in path.trim_start_matches('.').split('.') {
                node = node
                    .get(key)
                    .unwrap_or_else(|| panic!("{file}: .Values{path} is not in values.yaml"));
            }
        }
    }
    assert!(used > 20);
}

#[test]
fn templates_are_balanced() {
    let opener = regex::Regex::new(r"\{\{-?\s*(if|with|range|define)\b").unwrap();
    let end = regex::Regex::new(r"\{\{-?\s*end\s*-?\}\}").unwrap();
    for (file, text) in templates() {
        assert_eq!(
            opener.find_iter(&text).count(),
            end.find_iter(&text).count(),
            "{file}: blocks and ends"
        );
        assert_eq!(
            text.matches("{{").count(),
            text.matches("}}").count(),
            "{file}: delimiters"
        );
        // `include` output is a string: it must be indented, never dropped raw into YAML.
        for line in text.lines() {
            if line.contains("include \"sluice.labels\"")
                || line.contains("include \"sluice.selectorLabels\"")
            {
                assert!(
                    line.contains("| nindent") || file == "_helpers.tpl",
                    "{file}: {line}"
                );
            }
        }
    }
}

/// The rules of a Role or ClusterRole of deploy/rbac (or the all-namespaces component).
fn deploy_rules(kind: &str, name: &str) -> Value {
    for file in [
        "rbac/operator.yaml",
        "rbac/agent-rbac.yaml",
        "rbac/tenant-secrets.yaml",
        "components/all-namespaces/clusterrolebinding.yaml",
    ] {
        let text = read(root().join("deploy").join(file));
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        if let Some(role) = documents
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        {
            return role["rules"].clone();
        }
    }
    panic!("no {kind} {name} in deploy/rbac")
}

#[test]
fn chart_rbac_rules_equal_deploys() {
    let chart_rules: Value =
        serde_saphyr::from_str(&read(chart().join("files/rbac.yaml"))).unwrap();
    let expected = json!({
        "operator": deploy_rules("ClusterRole", "sluice-operator"),
        "controlNamespace": deploy_rules("ClusterRole", "sluice-operator-control-namespace"),
        "tenantSecrets": deploy_rules("ClusterRole", "sluice-operator-tenant-secrets"),
        "allNamespaces": deploy_rules("ClusterRole", "sluice-operator-all-namespaces"),
        "leaderElection": deploy_rules("Role", "sluice-operator-leader-election"),
        "agent": deploy_rules("ClusterRole", sluice::layout::AGENT_CLUSTER_ROLE),
        "agentKubelet": deploy_rules("ClusterRole", sluice::layout::AGENT_KUBELET_CLUSTER_ROLE),
    });
    assert_eq!(chart_rules, expected);
    // Every rule set is rendered by the template.
    let rbac = &templates()["rbac.yaml"];
    for key in expected.as_object().unwrap().keys() {
        assert!(
            rbac.contains(&format!("toYaml $rules.{key} | nindent 2")),
            "{key}"
        );
    }
}

#[test]
fn default_image_is_this_version() {
    let chart: Value = serde_saphyr::from_str(&read(chart().join("Chart.yaml"))).unwrap();
    assert_eq!(chart["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    let values = values();
    assert_eq!(values["image"]["repository"], "ghcr.io/sluice-dev/sluice");
    // An empty tag is the appVersion (templates/_helpers.tpl).
    assert_eq!(values["image"]["tag"], "");
    assert!(templates()["_helpers.tpl"].contains("(default .Chart.AppVersion .Values.image.tag)"));
}

/// The Deployment's args with the default values filled in, as Helm would print them.
fn default_args(release_namespace: &str) -> Vec<String> {
    let values = values();
    let text = &templates()["deployment.yaml"];
    let start = text.find("          args:\n").unwrap();
    let mut args = Vec::new();
    let mut skipping = false;
    for line in text[start..].lines().skip(1) {
        let line = line.trim();
        if line.starts_with("{{- if .Values.leaderElection.enabled }}") {
            skipping = values["leaderElection"]["enabled"] != true;
            continue;
        }
        if line.starts_with("{{- /*") {
            continue;
        }
        if line.starts_with("{{- with .Values.controlNamespaces }}") {
            skipping = values["controlNamespaces"]
                .as_array()
                .is_none_or(Vec::is_empty);
            continue;
        }
        if line == "{{- end }}" {
            skipping = false;
            continue;
        }
        let Some(arg) = line.strip_prefix("- ") else {
            break;
        };
        if skipping {
            continue;
        }
        let arg = arg
            .replace("{{ .Values.port }}", &values["port"].to_string())
            .replace(
                "{{ .Values.logFormat }}",
                values["logFormat"].as_str().unwrap(),
            )
            .replace("{{ join \",\" . }}", release_namespace);
        assert!(!arg.contains("{{"), "unhandled template in {arg}");
        args.push(arg);
    }
    args
}

#[test]
fn default_flags_agree_with_the_default_rbac() {
    assert_eq!(
        values()["controlNamespaces"],
        json!([]),
        "the default is the release namespace"
    );
    let options =
        sluice::cli::run::container_options(&default_args("sluice-system"), "sluice-system")
            .unwrap_or_else(|e| panic!("the chart's args: {e}"));
    assert_eq!(
        options.control_namespaces,
        ControlNamespaces::Only(vec!["sluice-system".to_owned()])
    );
    let lease = options.lease.expect("two replicas elect a leader");
    assert_eq!(lease.namespace, "sluice-system");
    // The Lease Role names the Lease.
    let rules = deploy_rules("Role", "sluice-operator-leader-election");
    assert!(rules.to_string().contains(&format!("\"{}\"", lease.name)));
    assert_eq!(u64::from(options.listen.port()), values()["port"]);
    assert_eq!(values()["replicas"], 2);
    // One RoleBinding per control namespace, or a ClusterRoleBinding for "*".
    let rbac = &templates()["rbac.yaml"];
    assert!(rbac.contains(
        "{{- range $namespaces }}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding"
    ));
    assert!(rbac.contains("{{- if has \"*\" $namespaces }}"));
}

#[test]
fn default_pod_settings_equal_deploys() {
    let deployment: Value =
        serde_saphyr::from_str(&read(root().join("deploy/operator/deployment.yaml"))).unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let values = values();
    assert_eq!(values["podSecurityContext"], pod["securityContext"]);
    assert_eq!(values["securityContext"], container["securityContext"]);
    assert_eq!(values["resources"], container["resources"]);
    assert_eq!(values["replicas"], deployment["spec"]["replicas"]);
    assert_eq!(
        format!(
            "{}:{}",
            values["image"]["repository"].as_str().unwrap(),
            env!("CARGO_PKG_VERSION")
        ),
        container["image"].as_str().unwrap()
    );
    // Both run the same flags with the default values.
    let deploy_args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let ours = sluice::cli::run::container_options(&deploy_args, "sluice-system").unwrap();
    let chart =
        sluice::cli::run::container_options(&default_args("sluice-system"), "sluice-system")
            .unwrap();
    assert_eq!(ours.control_namespaces, chart.control_namespaces);
    assert_eq!(ours.listen, chart.listen);
    assert_eq!(
        ours.lease.map(|l| (l.namespace, l.name)),
        chart.lease.map(|l| (l.namespace, l.name))
    );
}
