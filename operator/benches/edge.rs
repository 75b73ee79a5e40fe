//! The agent's routing filter (render/edge.lua) on LuaJIT, per record, at 10, 1,000 and
//! 10,000 flows (goal: at least 200,000 records/s per core at 1,000 flows, and flat within
//! 2× from 10 to 10,000 flows). A fast regression guard only: inside fluent-bit a record also
//! costs its conversion to and from a Lua table, which `agent_fluent_bit.py` measures on the
//! real binary (benches/README.md). Run with `cargo bench -p sluice --bench edge`.
//!
//! Each pipeline has its `n` Flows in 10 namespaces (`n / 10` per namespace, each selecting
//! `app=web-<i>`), plus two ClusterFlows every record is checked against: "everything but
//! kube-system and sidecars" and a namespace-label select. Records come from 256 pods (their
//! tags), half taken by one Flow of their namespace and the first ClusterFlow (two copies),
//! half by the ClusterFlow only. `_cached` is the usual case: the filter decided for each
//! container before. `_relabelled` changes a label on every record, so every record is
//! decided anew against every flow of its namespace (the worst case: a table reload, or pods
//! relabelled all the time). `_gc_stopped` runs with LuaJIT's collector stopped, which
//! isolates what the collector costs. `edge_table_reload` measures loading a changed routing
//! table at 1,000 and 10,000 flows.

mod common;

use std::collections::BTreeSet;
use std::hint::black_box;

use common::simple_flows;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::model::{FlowPlan, Kind, ObjectKey};
use sluice::routing::{Action, FlowMatcher, Rule, Scope, Selector};

const NAMESPACES: usize = 10;

fn cluster_flow(name: &str, rules: Vec<Rule>) -> FlowPlan {
    FlowPlan::new(
        ObjectKey::cluster(Kind::ClusterFlow, name),
        FlowMatcher {
            scope: Scope::Cluster,
            rules,
        },
        Vec::new(),
        Vec::new(),
    )
}

fn pipeline(n: usize) -> sluice::model::Pipeline {
    let mut p = simple_flows(n);
    // Many flows per namespace: the filter must not cost what a namespace holds.
    for (i, flow) in p.flows.iter_mut().enumerate() {
        let namespace = format!("team-{}", i % NAMESPACES);
        let mut matcher = (*flow.matcher).clone();
        matcher.scope = Scope::Namespace(namespace.clone());
        matcher.rules[0].selector.labels = [("app".to_owned(), format!("web-{i}"))]
            .into_iter()
            .collect();
        *flow = FlowPlan::new(
            ObjectKey::namespaced(Kind::Flow, &namespace, &format!("web-{i}")),
            matcher,
            (*flow.filters).clone(),
            flow.outputs.clone(),
        );
    }
    p.flows.push(cluster_flow(
        "all-but-system",
        vec![
            Rule {
                action: Action::Exclude,
                selector: Selector {
                    namespaces: BTreeSet::from(["kube-system".to_owned()]),
                    ..Default::default()
                },
            },
            Rule {
                action: Action::Exclude,
                selector: Selector {
                    container_names: BTreeSet::from(["istio-proxy".to_owned()]),
                    ..Default::default()
                },
            },
        ],
    ));
    p.flows.push(cluster_flow(
        "prod",
        vec![Rule {
            action: Action::Select,
            selector: Selector {
                namespace_labels: [("env".to_owned(), "prod".to_owned())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            },
        }],
    ));
    p
}

struct Filter {
    lua: mlua::Lua,
    _dir: tempfile::TempDir,
}

fn load(p: &sluice::model::Pipeline) -> Filter {
    let dir = tempfile::tempdir().expect("temp dir");
    for file in sluice::render::agent_routes(p).files() {
        std::fs::write(dir.path().join(&file.name), &file.content).expect("write table");
    }
    let lua = mlua::Lua::new();
    let script = sluice::render::edge::filter_script(dir.path().to_str().expect("utf-8 path"));
    lua.load(&script).exec().expect("the filter loads");
    Filter { lua, _dir: dir }
}

/// 256 pods' records: (tag, record). Pod `i` is in namespace `team-<i % 10>`; even pods are
/// taken by a Flow of theirs (when `flows` has one for them).
fn records(lua: &mlua::Lua, flows: usize) -> Vec<(String, mlua::Table)> {
    (0..256)
        .map(|i| {
            let namespace = format!("team-{}", i % NAMESPACES);
            // Flow j is in namespace j % 10 and selects app=web-j.
            let app = if i % 2 == 0 {
                format!(
                    "web-{}",
                    (i * 7919) % flows.max(1) / NAMESPACES * NAMESPACES + i % NAMESPACES
                )
            } else {
                "db".to_owned()
            };
            let labels = lua.create_table().unwrap();
            labels.set("app", app).unwrap();
            labels.set("pod-template-hash", "5d8f7c9b").unwrap();
            let kubernetes = lua.create_table().unwrap();
            kubernetes
                .set("namespace_name", namespace.as_str())
                .unwrap();
            kubernetes.set("pod_name", format!("web-{i}")).unwrap();
            kubernetes.set("container_name", "app").unwrap();
            kubernetes.set("host", "node-1").unwrap();
            kubernetes.set("labels", labels).unwrap();
            let namespace_labels = lua.create_table().unwrap();
            namespace_labels.set("team", "x").unwrap();
            let namespace_table = lua.create_table().unwrap();
            namespace_table.set("labels", namespace_labels).unwrap();
            let record = lua.create_table().unwrap();
            record.set("log", "GET /healthz 200").unwrap();
            record.set("stream", "stdout").unwrap();
            record.set("kubernetes", kubernetes).unwrap();
            record.set("kubernetes_namespace", namespace_table).unwrap();
            let tag = format!("kube.{namespace}.web-{i}.app.{}", "0".repeat(64));
            (tag, record)
        })
        .collect()
}

fn edge(c: &mut Criterion) {
    // (flows, relabel every record, collector running)
    let cases: &[(usize, bool, bool)] = &[
        (10, false, true),
        (1_000, false, true),
        (10_000, false, true),
        (10, true, true),
        (1_000, true, true),
        (10_000, true, true),
        (10_000, false, false),
    ];
    let mut group = c.benchmark_group("edge_filter");
    group.throughput(Throughput::Elements(1));
    for &(n, relabel, gc) in cases {
        let p = pipeline(n);
        let filter = load(&p);
        let function: mlua::Function = filter
            .lua
            .globals()
            .get(sluice::render::edge::LUA_FUNCTION)
            .unwrap();
        let records = records(&filter.lua, n);
        filter.lua.gc_collect().unwrap();
        if !gc {
            filter.lua.gc_stop();
        }
        let mut next = 0u64;
        let name = format!(
            "{n}_flows_{}{}",
            if relabel { "relabelled" } else { "cached" },
            if gc { "" } else { "_gc_stopped" }
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                let (tag, record) = &records[next as usize % records.len()];
                next += 1;
                if relabel {
                    let kubernetes: mlua::Table = record.get("kubernetes").unwrap();
                    let labels: mlua::Table = kubernetes.get("labels").unwrap();
                    labels.set("pod-template-hash", next).unwrap();
                }
                let out: (i64, f64, mlua::Value) = function
                    .call((tag.as_str(), 1.5, black_box(record)))
                    .unwrap();
                black_box(out)
            })
        });
    }
    group.finish();

    // What a table change costs the running filter: parsing and building the new table (the
    // filter does this at most once per revision of a slot, checked every 5 s).
    let mut reload = c.benchmark_group("edge_table_reload");
    for n in [1_000, 10_000] {
        let routes = sluice::render::agent_routes(&pipeline(n));
        let lua = mlua::Lua::new();
        reload.bench_function(format!("{n}_flows_every_slot"), |b| {
            b.iter(|| {
                for file in routes.files() {
                    let loaded: mlua::Table = lua.load(black_box(&file.content)).eval().unwrap();
                    black_box(loaded);
                }
            })
        });
    }
    reload.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = edge
}
criterion_main!(benches);
