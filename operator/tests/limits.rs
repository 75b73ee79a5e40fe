//! Shared resources belong to the Logging's admin: tenant caps, allowed choices and the
//! buffer budget (model::limits), resolved from YAML next to `examples/` and rendered.

use std::path::PathBuf;

use sluice::cli::input;
use sluice::model::{self, Kind, ObjectKey, Pipeline, Problem, Resolution};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn resolve_examples_with(extra: &str) -> Resolution {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("extra.yaml"), extra).unwrap();
    let loaded = input::load(&[examples(), dir.path().to_owned()]).unwrap();
    model::resolve(&loaded.objects.inventory())
}

fn pipeline<'a>(resolution: &'a Resolution, logging: &str) -> &'a Pipeline {
    resolution
        .pipelines
        .iter()
        .find(|p| p.logging == logging)
        .unwrap()
}

fn problems<'a>(resolution: &'a Resolution, key: &ObjectKey) -> Vec<&'a Problem> {
    resolution
        .problems
        .get(key)
        .map(|p| p.iter().collect())
        .unwrap_or_default()
}

fn total_limit(pipeline: &Pipeline, key: &ObjectKey) -> Option<String> {
    pipeline.outputs[key]
        .spec
        .buffer
        .as_ref()
        .and_then(|b| b.total_limit_size.clone())
}

/// A second Logging owning namespace `team-x`, with `limits` as its tenantLimits, and a Flow
/// there sending to Output `out` with `output` as its spec.
fn team_x(limits: &str, output: &str) -> String {
    format!(
        r#"
apiVersion: logging.sluice.dev/v1alpha1
kind: Logging
metadata: {{name: other}}
spec:
  controlNamespace: other-logging
  watchNamespaces: [team-x]
  aggregator:
    bufferVolume: {{emptyDir: {{sizeLimit: 4Gi}}}}
  tenantLimits: {limits}
---
apiVersion: logging.sluice.dev/v1alpha1
kind: Flow
metadata: {{name: all, namespace: team-x}}
spec:
  localOutputRefs: [out]
---
apiVersion: logging.sluice.dev/v1alpha1
kind: Output
metadata: {{name: out, namespace: team-x}}
spec: {output}
"#
    )
}

fn out() -> ObjectKey {
    ObjectKey::namespaced(Kind::Output, "team-x", "out")
}

const HTTP: &str = "http: {endpoint: \"https://logs.example\"}";
const HTTP_SPEC: &str = "{http: {endpoint: \"https://logs.example\"}}";

#[test]
fn the_examples_buffers_fit_their_volume() {
    let resolution = resolve_examples_with("");
    assert_eq!(resolution.problems, Default::default());
    let main = pipeline(&resolution, "main");
    // 10 flow-output pairs (with the error output) × 2 workers on a 20Gi volume: with a
    // fixed 2g default they would claim 40g.
    let status = main.buffers.status();
    assert_eq!(status.buffers, 20);
    assert_eq!(status.volume, "20Gi");
    assert_eq!(status.per_output_default, "796Mi");
    assert_eq!(status.allocated, "17856Mi");
    assert!(main.buffers.allocated <= main.buffers.volume);
    // What the status reports is what the rendered buffers add up to.
    let mut sum = 0u64;
    let flows = main.flows.iter().chain(main.default_flow.iter());
    for key in flows
        .flat_map(|f| f.outputs.iter())
        .chain(main.error_output.iter())
    {
        if let Some(total) = total_limit(main, key) {
            sum += model::limits::fluentd_size_bytes(&total).unwrap() * 2;
        }
    }
    assert_eq!(sum, main.buffers.allocated);
    let conf: String = sluice::render::aggregator(main)
        .all()
        .map(|f| f.content.as_str())
        .collect();
    assert!(conf.contains("total_limit_size 796m\n"), "{conf}");
}

#[test]
fn the_default_total_limit_follows_the_volume() {
    let resolution = resolve_examples_with(&team_x("{}", HTTP_SPEC));
    let other = pipeline(&resolution, "other");
    // One pair, one worker, 90% of 4Gi.
    assert_eq!(other.buffers.status().per_output_default, "3686Mi");
    assert_eq!(other.buffers.status().volume, "4Gi");
    // A tenant Output gets at most the cap the admin set.
    let resolution = resolve_examples_with(&team_x("{maxTotalLimitSize: 512m}", HTTP_SPEC));
    let other = pipeline(&resolution, "other");
    assert_eq!(total_limit(other, &out()).as_deref(), Some("512m"));
    assert_eq!(problems(&resolution, &out()), Vec::<&Problem>::new());
}

#[test]
fn a_tenant_total_limit_beyond_the_cap_is_lowered_and_the_cap_named() {
    let spec = format!("{{{HTTP}, buffer: {{totalLimitSize: 50g}}}}");
    let resolution = resolve_examples_with(&team_x("{maxTotalLimitSize: 1g}", &spec));
    let other = pipeline(&resolution, "other");
    assert_eq!(total_limit(other, &out()).as_deref(), Some("1g"));
    let found = problems(&resolution, &out());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].reason, "BufferLimitLowered");
    assert_eq!(found[0].field, "spec.buffer.totalLimitSize");
    assert!(found[0].message.contains("maxTotalLimitSize"), "{found:?}");
    // Without a cap the tenant's share of the volume is the cap.
    let resolution = resolve_examples_with(&team_x("{}", &spec));
    assert_eq!(
        total_limit(pipeline(&resolution, "other"), &out()).as_deref(),
        Some("3686m")
    );
    assert!(
        problems(&resolution, &out())[0]
            .message
            .contains("share of the buffer volume")
    );
    assert!(
        !resolution
            .problems
            .contains_key(&ObjectKey::cluster(Kind::Logging, "other"))
    );
}

#[test]
fn chunk_size_and_flush_threads_beyond_their_caps_are_lowered() {
    let spec = format!("{{{HTTP}, buffer: {{chunkLimitSize: 1g, flushThreadCount: 64}}}}");
    let resolution = resolve_examples_with(&team_x("{}", &spec));
    let buffer = pipeline(&resolution, "other").outputs[&out()]
        .spec
        .buffer
        .clone()
        .unwrap();
    assert_eq!(buffer.chunk_limit_size.as_deref(), Some("64m"));
    assert_eq!(buffer.flush_thread_count, Some(4));
    let fields: Vec<&str> = problems(&resolution, &out())
        .iter()
        .map(|p| p.field.as_str())
        .collect();
    assert_eq!(
        fields,
        ["spec.buffer.chunkLimitSize", "spec.buffer.flushThreadCount"]
    );
    let resolution = resolve_examples_with(&team_x("{maxFlushThreadCount: 8}", &spec));
    let buffer = pipeline(&resolution, "other").outputs[&out()]
        .spec
        .buffer
        .clone()
        .unwrap();
    assert_eq!(buffer.flush_thread_count, Some(8));
}

#[test]
fn an_output_that_sets_no_flush_threads_gets_one() {
    let resolution = resolve_examples_with(&team_x("{}", HTTP_SPEC));
    let other = pipeline(&resolution, "other");
    let buffer = other.outputs[&out()].spec.buffer.clone().unwrap();
    assert_eq!(buffer.flush_thread_count, Some(1));
    let conf: String = sluice::render::aggregator(other)
        .all()
        .map(|f| f.content.as_str())
        .collect();
    assert!(conf.contains("flush_thread_count 1\n"), "{conf}");
}

#[test]
fn block_is_only_for_outputs_whose_admin_allows_it() {
    let spec = format!("{{{HTTP}, buffer: {{overflowAction: block}}}}");
    let resolution = resolve_examples_with(&team_x("{}", &spec));
    let other = pipeline(&resolution, "other");
    assert!(!other.outputs.contains_key(&out()));
    let found = problems(&resolution, &out());
    assert_eq!(found[0].reason, "OverflowActionNotAllowed");
    assert!(found[0].message.contains("allowedOverflowActions"));
    let resolution = resolve_examples_with(&team_x(
        "{allowedOverflowActions: [block, drop_oldest_chunk]}",
        &spec,
    ));
    assert!(pipeline(&resolution, "other").outputs.contains_key(&out()));
    assert_eq!(problems(&resolution, &out()), Vec::<&Problem>::new());
    // throw_exception is allowed by default.
    let spec = format!("{{{HTTP}, buffer: {{overflowAction: throw_exception}}}}");
    let resolution = resolve_examples_with(&team_x("{}", &spec));
    assert!(pipeline(&resolution, "other").outputs.contains_key(&out()));
}

#[test]
fn an_s3_output_without_keys_needs_the_admins_consent() {
    let spec = "{s3: {bucket: team-x-logs, region: eu-west-1}}";
    let resolution = resolve_examples_with(&team_x("{}", spec));
    assert!(!pipeline(&resolution, "other").outputs.contains_key(&out()));
    assert_eq!(
        problems(&resolution, &out())[0].reason,
        "AmbientCredentialsNotAllowed"
    );
    let resolution = resolve_examples_with(&team_x("{allowAmbientCredentials: true}", spec));
    assert!(pipeline(&resolution, "other").outputs.contains_key(&out()));
}

#[test]
fn cluster_outputs_are_not_capped_but_count_against_the_volume() {
    let extra = r#"
apiVersion: logging.sluice.dev/v1alpha1
kind: ClusterOutput
metadata: {name: huge}
spec:
  s3: {bucket: admin-bucket, region: eu-west-1}
  buffer: {totalLimitSize: 50g, flushThreadCount: 32, overflowAction: block}
---
apiVersion: logging.sluice.dev/v1alpha1
kind: ClusterFlow
metadata: {name: to-huge}
spec:
  globalOutputRefs: [huge]
"#;
    let resolution = resolve_examples_with(extra);
    let main = pipeline(&resolution, "main");
    let huge = ObjectKey::cluster(Kind::ClusterOutput, "huge");
    assert_eq!(total_limit(main, &huge).as_deref(), Some("50g"));
    let buffer = main.outputs[&huge].spec.buffer.clone().unwrap();
    assert_eq!(buffer.flush_thread_count, Some(32));
    assert_eq!(problems(&resolution, &huge), Vec::<&Problem>::new());
    let logging = problems(&resolution, &ObjectKey::cluster(Kind::Logging, "main"));
    assert_eq!(logging.len(), 1, "{logging:?}");
    assert_eq!(logging[0].reason, "BufferOvercommitted");
    assert!(logging[0].message.contains("20Gi"), "{logging:?}");
}

#[test]
fn pods_may_opt_out_only_when_the_admin_allows_it() {
    let agent = |resolution: &Resolution| {
        sluice::render::agent(pipeline(resolution, "other"))
            .into_iter()
            .map(|f| f.content)
            .collect::<String>()
    };
    let text = agent(&resolve_examples_with(&team_x("{}", HTTP_SPEC)));
    assert!(text.contains("k8s-logging.exclude: \"off\""), "{text}");
    let text = agent(&resolve_examples_with(&team_x(
        "{allowPodOptOut: true}",
        HTTP_SPEC,
    )));
    assert!(text.contains("k8s-logging.exclude: \"on\""), "{text}");
}

#[test]
fn an_unreadable_volume_size_is_a_problem_and_the_budget_assumes_the_default() {
    let extra = team_x("{}", HTTP_SPEC).replace(
        "bufferVolume: {emptyDir: {sizeLimit: 4Gi}}",
        "bufferVolume: {persistentVolumeClaim: {size: lots}}",
    );
    let resolution = resolve_examples_with(&extra);
    let other = pipeline(&resolution, "other");
    assert_eq!(other.buffers.status().volume, "10Gi");
    let logging = problems(&resolution, &ObjectKey::cluster(Kind::Logging, "other"));
    assert_eq!(logging.len(), 1, "{logging:?}");
    assert_eq!(logging[0].reason, "InvalidQuantity");
    assert_eq!(
        logging[0].field,
        "spec.aggregator.bufferVolume.persistentVolumeClaim.size"
    );
}

/// `count` Flows named `<prefix>-<i>` in `namespace`, each sending to ClusterOutput `output`.
fn flows_to(namespace: &str, prefix: &str, count: usize, output: &str) -> String {
    (0..count)
        .map(|i| {
            format!(
                "---\napiVersion: logging.sluice.dev/v1alpha1\nkind: Flow\nmetadata: {{name: {prefix}-{i:02}, namespace: {namespace}}}\nspec: {{globalOutputRefs: [{output}]}}\n"
            )
        })
        .collect()
}

fn flow(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey::namespaced(Kind::Flow, namespace, name)
}

fn reasons<'a>(resolution: &'a Resolution, key: &ObjectKey) -> Vec<&'a str> {
    problems(resolution, key).iter().map(|p| p.reason).collect()
}

/// A namespace the examples' Logging watches (by its label), with one Flow `copy` sending
/// to ClusterOutput `output`.
fn watched_namespace_with_flow(namespace: &str, output: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}, labels: {{logging.example.com/collect: \"true\"}}}}\n{}",
        flows_to(namespace, "copy", 1, output)
    )
}

/// What the status reports is what the rendered buffers add up to: one per output
/// instance (and the error output) per worker.
fn assert_status_is_rendered(main: &Pipeline, workers: u64) {
    let instances = model::instances::OutputInstances::of(main);
    let mut sum = 0u64;
    let mut buffers = 0u64;
    let leads = instances
        .instances
        .iter()
        .map(|instance| instance.lead())
        .chain(main.error_output.iter());
    for key in leads {
        if let Some(total) = total_limit(main, key) {
            sum += model::limits::fluentd_size_bytes(&total).unwrap() * workers;
            buffers += workers;
        }
    }
    assert_eq!(sum, main.buffers.allocated);
    assert_eq!(buffers, main.buffers.buffers);
}

const SHARED_HTTP: &str = r#"
---
apiVersion: logging.sluice.dev/v1alpha1
kind: ClusterOutput
metadata: {name: shared-http}
spec:
  http: {endpoint: "https://logs.example"}
"#;

#[test]
fn flows_of_one_namespace_share_an_outputs_buffer() {
    // Twelve Flows of `data` sending to one ClusterOutput share one instance (a buffer per
    // worker), where each had a buffer of its own before.
    let without = pipeline(&resolve_examples_with(SHARED_HTTP), "main")
        .buffers
        .clone();
    let resolution = resolve_examples_with(&format!(
        "{SHARED_HTTP}{}",
        flows_to("data", "copy", 12, "shared-http")
    ));
    let main = pipeline(&resolution, "main");
    let shared = ObjectKey::cluster(Kind::ClusterOutput, "shared-http");
    for i in 0..12 {
        let key = flow("data", &format!("copy-{i:02}"));
        assert_eq!(reasons(&resolution, &key), Vec::<&str>::new());
        let plan = main.flows.iter().find(|f| f.key == key).unwrap();
        assert!(plan.outputs.contains(&shared));
    }
    assert_eq!(main.buffers.buffers, without.buffers + 2);
    assert_status_is_rendered(main, 2);
    // One `<label>` with one plugin for all twelve.
    let conf: String = sluice::render::aggregator(main)
        .all()
        .map(|f| f.content.as_str())
        .collect();
    let data_instance = "# ClusterOutput shared-http for the Flows of namespace data\n<label @out-";
    assert_eq!(conf.matches(data_instance).count(), 1, "{conf}");
    assert_eq!(conf.matches("@type http\n").count(), 2, "{conf}");
}

#[test]
fn tenant_flows_to_a_cluster_output_cannot_overcommit_the_volume() {
    // Each namespace sending to cluster-archive gets its own instance (2g × 2 workers), so
    // one namespace's flood never drops another's records: twelve namespaces do not fit.
    // Named to sort after the examples' teams: instances of equal rank larger than the
    // default are placed in namespace order.
    let extra: String = (0..12)
        .map(|i| watched_namespace_with_flow(&format!("z-team-{i:02}"), "cluster-archive"))
        .collect();
    let resolution = resolve_examples_with(&extra);
    let main = pipeline(&resolution, "main");
    let logging = ObjectKey::cluster(Kind::Logging, "main");
    assert_eq!(problems(&resolution, &logging), Vec::<&Problem>::new());
    assert!(main.buffers.allocated <= main.buffers.volume / 10 * 9);
    let archive = ObjectKey::cluster(Kind::ClusterOutput, "cluster-archive");
    let mut placed = 0;
    for i in 0..12 {
        let key = flow(&format!("z-team-{i:02}"), "copy-00");
        let plan = main.flows.iter().find(|f| f.key == key).unwrap();
        if plan.outputs.contains(&archive) {
            placed += 1;
            assert_eq!(reasons(&resolution, &key), Vec::<&str>::new());
        } else {
            let found = problems(&resolution, &key);
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].reason, "BufferBudgetExhausted");
            assert_eq!(found[0].field, "spec.globalOutputRefs");
            assert!(found[0].message.contains("cluster-archive"), "{found:?}");
        }
    }
    assert!(placed > 0 && placed < 12, "{placed}");
    // The admin's own instances and the other teams' keep their buffers.
    let payments = flow("payments", "api");
    assert_eq!(reasons(&resolution, &payments), Vec::<&str>::new());
    assert!(
        main.flows
            .iter()
            .any(|f| f.key == payments && !f.outputs.is_empty())
    );
    assert_status_is_rendered(main, 2);
}

/// An Output `name` in `namespace` sending to its own endpoint, asking for 1g.
fn big_output(namespace: &str, name: &str) -> String {
    format!(
        "---\napiVersion: logging.sluice.dev/v1alpha1\nkind: Output\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  http: {{endpoint: \"https://{name}.example\"}}\n  buffer: {{totalLimitSize: 1g}}\n"
    )
}

/// `count` Flows named `<prefix>-<i>` in `namespace`, each sending to its own big Output.
fn flows_to_own_big_outputs(namespace: &str, prefix: &str, count: usize) -> String {
    (0..count)
        .map(|i| {
            let name = format!("{prefix}-{i:02}");
            format!(
                "---\napiVersion: logging.sluice.dev/v1alpha1\nkind: Flow\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{localOutputRefs: [{name}]}}\n{}",
                big_output(namespace, &name)
            )
        })
        .collect()
}

#[test]
fn a_namespace_with_many_outputs_cannot_starve_one_with_a_single_output() {
    // 3686Mi of budget (4Gi, one worker): team-a's Output `out` gets the default (3686Mi /
    // 12 instances = 307Mi), then three 1g instances fit: team-z's only one (the first of
    // its namespace), team-a's a-00 and a-01. team-a's Flows sort first yet cannot take
    // team-z's place.
    let logging = team_x("{maxTotalLimitSize: 1g}", HTTP_SPEC)
        .replace(
            "watchNamespaces: [team-x]",
            "watchNamespaces: [team-a, team-z]",
        )
        .replace("namespace: team-x", "namespace: team-a");
    let extra = format!(
        "{logging}{}{}",
        flows_to_own_big_outputs("team-a", "a", 10),
        flows_to_own_big_outputs("team-z", "z", 1)
    );
    let resolution = resolve_examples_with(&extra);
    let other = pipeline(&resolution, "other");
    let sends = |flow_key: &ObjectKey| {
        other
            .flows
            .iter()
            .any(|f| &f.key == flow_key && !f.outputs.is_empty())
    };
    assert!(sends(&flow("team-z", "z-00")));
    assert_eq!(
        reasons(&resolution, &flow("team-z", "z-00")),
        Vec::<&str>::new()
    );
    assert!(sends(&flow("team-a", "a-00")));
    assert!(sends(&flow("team-a", "a-01")));
    assert!(!sends(&flow("team-a", "a-02")));
    assert_eq!(
        reasons(&resolution, &flow("team-a", "a-02")),
        ["BufferBudgetExhausted"]
    );
    assert!(
        !resolution
            .problems
            .contains_key(&ObjectKey::cluster(Kind::Logging, "other"))
    );
    assert_status_is_rendered(other, 1);

    // The admin may cap a namespace's outputs outright: team-a keeps its first by flow
    // name (a-00 sorts before all). The deprecated pair cap reads the same.
    for cap in [
        "maxOutputsPerNamespace: 1",
        "maxFlowOutputPairsPerNamespace: 1",
    ] {
        let capped = extra.replace(
            "tenantLimits: {maxTotalLimitSize: 1g}",
            &format!("tenantLimits: {{maxTotalLimitSize: 1g, {cap}}}"),
        );
        let resolution = resolve_examples_with(&capped);
        let other = pipeline(&resolution, "other");
        let all = other
            .flows
            .iter()
            .find(|f| f.key == flow("team-a", "all"))
            .unwrap();
        assert!(!all.outputs.contains(&out_a()));
        assert_eq!(
            reasons(&resolution, &flow("team-a", "all")),
            ["TooManyOutputs"]
        );
        let field = cap.split(':').next().unwrap();
        assert!(
            problems(&resolution, &flow("team-a", "all"))[0]
                .message
                .contains(field),
            "{cap}"
        );
        assert_eq!(
            reasons(&resolution, &flow("team-a", "a-00")),
            Vec::<&str>::new()
        );
        assert_eq!(
            reasons(&resolution, &flow("team-a", "a-01")),
            ["TooManyOutputs"]
        );
        assert_eq!(
            reasons(&resolution, &flow("team-z", "z-00")),
            Vec::<&str>::new()
        );
    }
}

#[test]
fn equal_outputs_of_a_namespace_share_one_buffer_and_the_cap_counts_it_once() {
    // Ten Flows, each with its own Output, all ten equal: one instance, so a cap of one
    // output per namespace leaves every Flow its output.
    let outputs: String = (0..10)
        .map(|i| {
            format!(
                "---\napiVersion: logging.sluice.dev/v1alpha1\nkind: Flow\nmetadata: {{name: f-{i:02}, namespace: team-x}}\nspec: {{localOutputRefs: [o-{i:02}]}}\n---\napiVersion: logging.sluice.dev/v1alpha1\nkind: Output\nmetadata: {{name: o-{i:02}, namespace: team-x}}\nspec: {HTTP_SPEC}\n"
            )
        })
        .collect();
    let extra = format!(
        "{}{outputs}",
        team_x("{maxOutputsPerNamespace: 1}", HTTP_SPEC)
    );
    let resolution = resolve_examples_with(&extra);
    let other = pipeline(&resolution, "other");
    for i in 0..10 {
        assert_eq!(
            reasons(&resolution, &flow("team-x", &format!("f-{i:02}"))),
            Vec::<&str>::new()
        );
    }
    // `out` (the Flow `all`'s) is equal too: one buffer for all eleven.
    assert_eq!(other.buffers.buffers, 1);
    assert_status_is_rendered(other, 1);
    let conf: String = sluice::render::aggregator(other)
        .all()
        .map(|f| f.content.as_str())
        .collect();
    assert_eq!(conf.matches("@type http\n").count(), 1, "{conf}");
}

fn out_a() -> ObjectKey {
    ObjectKey::namespaced(Kind::Output, "team-a", "out")
}

#[test]
fn a_tenant_asking_for_more_cannot_shrink_the_default_of_others() {
    // Two pairs in team-x: `out` asks 3g (allowed up to 3g), `small` asks nothing.
    let spec = format!("{{{HTTP}, buffer: {{totalLimitSize: 3g}}}}");
    let extra = format!(
        "{}---\napiVersion: logging.sluice.dev/v1alpha1\nkind: Flow\nmetadata: {{name: second, namespace: team-x}}\nspec: {{localOutputRefs: [small]}}\n---\napiVersion: logging.sluice.dev/v1alpha1\nkind: Output\nmetadata: {{name: small, namespace: team-x}}\nspec: {HTTP_SPEC}\n",
        team_x("{maxTotalLimitSize: 3g}", &spec)
    );
    let resolution = resolve_examples_with(&extra);
    let other = pipeline(&resolution, "other");
    let small = ObjectKey::namespaced(Kind::Output, "team-x", "small");
    // Half of the 3686Mi budget each, whatever `out` asks; `out`'s 3g no longer fits.
    assert_eq!(other.buffers.status().per_output_default, "1843Mi");
    assert_eq!(total_limit(other, &small).as_deref(), Some("1843m"));
    assert_eq!(
        reasons(&resolution, &flow("team-x", "second")),
        Vec::<&str>::new()
    );
    assert_eq!(
        reasons(&resolution, &flow("team-x", "all")),
        ["BufferBudgetExhausted"]
    );
    assert!(other.buffers.allocated <= 3686 * 1024 * 1024);
}

#[test]
fn tenant_file_and_stdout_outputs_need_the_admins_consent() {
    for (spec, reason, allow) in [
        (
            "{file: {path: logs}}",
            "FileOutputNotAllowed",
            "allowFileOutputs",
        ),
        (
            "{stdout: {}}",
            "StdoutOutputNotAllowed",
            "allowStdoutOutputs",
        ),
    ] {
        let resolution = resolve_examples_with(&team_x("{}", spec));
        assert!(!pipeline(&resolution, "other").outputs.contains_key(&out()));
        assert_eq!(reasons(&resolution, &out()), [reason]);
        let resolution = resolve_examples_with(&team_x(&format!("{{{allow}: true}}"), spec));
        assert!(pipeline(&resolution, "other").outputs.contains_key(&out()));
        assert_eq!(reasons(&resolution, &out()), Vec::<&str>::new());
    }
    // ClusterOutputs are the admin's: the examples' file ClusterOutput `dead-letters` is used
    // without any allowance (the_examples_buffers_fit_their_volume checks for no problems).
    let resolution = resolve_examples_with("");
    let dead_letters = ObjectKey::cluster(Kind::ClusterOutput, "dead-letters");
    assert!(
        pipeline(&resolution, "main")
            .outputs
            .contains_key(&dead_letters)
    );
}
