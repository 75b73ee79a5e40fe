//! Rendering time for 1,000 and 10,000 simple flows (goal: 10,000 in at most 50 ms), and
//! resolving the load scenario's objects into a pipeline (the operator does it on every
//! reconcile; goal: 10,000 flows in at most 100 ms).
//! Run with `cargo bench -p sluice --bench render`.

mod common;

use std::hint::black_box;

use common::{load_inventory, simple_flows};
use criterion::{Criterion, criterion_group, criterion_main};

fn render(c: &mut Criterion) {
    for n in [1_000, 10_000] {
        let pipeline = simple_flows(n);
        c.bench_function(&format!("aggregator_{n}_flows"), |b| {
            b.iter(|| sluice::render::aggregator(black_box(&pipeline)))
        });
        c.bench_function(&format!("agent_{n}_flows"), |b| {
            b.iter(|| sluice::render::agent(black_box(&pipeline)))
        });
        let inventory = load_inventory(n);
        c.bench_function(&format!("resolve_{n}_flows"), |b| {
            b.iter(|| sluice::model::resolve(black_box(&inventory)))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = render
}
criterion_main!(benches);
