//! The agent's routing filter (render/edge.lua) on LuaJIT, per record, at 10, 1,000 and
//! 10,000 flows (goal: at least 200,000 records/s per core at 1,000 flows, and flat within
//! 2× from 10 to 10,000 flows). Run with `cargo bench -p sluice --bench edge`.
//!
//! Each pipeline is `simple_flows(n)` (one Flow per namespace, `select app=web`) plus two
//! ClusterFlows every record is checked against: "everything but kube-system and sidecars"
//! and a namespace-label select. Records are half `app=web` (taken by their Flow and the
//! first ClusterFlow: two copies), half `app=db` (one copy). Case names say how many
//! namespaces the records cycle over: 10 is node-local (an agent sees the few dozen
//! namespaces of its node's pods) and the same at every size, so only the table grows; 256
//! is the spread worst case. `_gc_stopped` cases run with LuaJIT's collector stopped, which
//! isolates what the collector costs. `edge_table_reload` measures loading a changed routing
//! table at 1,000 and 10,000 flows.

mod common;

use std::collections::BTreeSet;
use std::hint::black_box;

use common::simple_flows;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::model::{FlowPlan, Kind, ObjectKey};
use sluice::routing::{Action, FlowMatcher, Rule, Scope, Selector};

fn cluster_flow(name: &str, rules: Vec<Rule>) -> FlowPlan {
    FlowPlan {
        key: ObjectKey::cluster(Kind::ClusterFlow, name),
        matcher: FlowMatcher {
            scope: Scope::Cluster,
            rules,
        },
        filters: Vec::new(),
        outputs: Vec::new(),
    }
}

fn pipeline(n: usize) -> sluice::model::Pipeline {
    let mut p = simple_flows(n);
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
                namespace_labels: [("env".to_owned(), "prod".to_owned())].into(),
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
    let table = dir.path().join(sluice::layout::AGENT_ROUTES_FILE);
    std::fs::write(&table, sluice::render::agent_routes(p).content).expect("write table");
    let lua = mlua::Lua::new();
    let script = sluice::render::edge::filter_script(table.to_str().expect("utf-8 path"));
    lua.load(&script).exec().expect("the filter loads");
    Filter { lua, _dir: dir }
}

fn records(lua: &mlua::Lua, namespaces: usize) -> Vec<mlua::Table> {
    (0..256)
        .map(|i| {
            let labels = lua.create_table().unwrap();
            labels
                .set("app", if i % 2 == 0 { "web" } else { "db" })
                .unwrap();
            labels.set("pod-template-hash", "5d8f7c9b").unwrap();
            let kubernetes = lua.create_table().unwrap();
            kubernetes
                .set("namespace_name", format!("team-{}", i % namespaces))
                .unwrap();
            kubernetes.set("pod_name", format!("web-{i}")).unwrap();
            kubernetes.set("container_name", "app").unwrap();
            kubernetes.set("host", "node-1").unwrap();
            kubernetes.set("labels", labels).unwrap();
            let namespace_labels = lua.create_table().unwrap();
            namespace_labels.set("team", "x").unwrap();
            let namespace = lua.create_table().unwrap();
            namespace.set("labels", namespace_labels).unwrap();
            let record = lua.create_table().unwrap();
            record.set("log", "GET /healthz 200").unwrap();
            record.set("stream", "stdout").unwrap();
            record.set("kubernetes", kubernetes).unwrap();
            record.set("kubernetes_namespace", namespace).unwrap();
            record
        })
        .collect()
}

fn edge(c: &mut Criterion) {
    // (flows, namespaces the records cycle over, collector running)
    let cases: &[(usize, usize, bool)] = &[
        (10, 10, true),
        (1_000, 10, true),
        (10_000, 10, true),
        (1_000, 256, true),
        (10_000, 256, true),
        (10, 10, false),
        (10_000, 10, false),
        (10_000, 256, false),
    ];
    let mut group = c.benchmark_group("edge_filter");
    group.throughput(Throughput::Elements(1));
    for &(n, spread, gc) in cases {
        let p = pipeline(n);
        let filter = load(&p);
        let function: mlua::Function = filter
            .lua
            .globals()
            .get(sluice::render::edge::LUA_FUNCTION)
            .unwrap();
        let records = records(&filter.lua, spread);
        filter.lua.gc_collect().unwrap();
        if !gc {
            filter.lua.gc_stop();
        }
        let mut next = 0;
        let name = format!(
            "{n}_flows_{spread}_ns{}",
            if gc { "" } else { "_gc_stopped" }
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                let record = &records[next % records.len()];
                next += 1;
                let out: (i64, f64, mlua::Value) =
                    function.call(("kube.x", 1.5, black_box(record))).unwrap();
                black_box(out)
            })
        });
    }
    group.finish();

    // What a table change costs the running filter: parsing and building the new table (the
    // filter does this at most once per revision, checked every 5 s).
    let mut reload = c.benchmark_group("edge_table_reload");
    for n in [1_000, 10_000] {
        let table = sluice::render::agent_routes(&pipeline(n)).content;
        let lua = mlua::Lua::new();
        reload.bench_function(format!("{n}_flows"), |b| {
            b.iter(|| {
                let loaded: mlua::Table = lua.load(black_box(&table)).eval().unwrap();
                black_box(loaded)
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
