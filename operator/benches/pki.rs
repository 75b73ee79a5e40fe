//! Minting one leaf (key generation included) per key algorithm. Goal: P-256 ≤ 0.5 ms.
//! Run: `cargo bench -p sluice --bench pki`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sluice::api::KeyAlgorithm;
use sluice::pki::mint::{self, LeafRole};

fn mint_leaf(c: &mut Criterion) {
    let not_before: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let not_after = not_before + jiff::SignedDuration::from_hours(2160);
    let mut group = c.benchmark_group("mint_leaf");
    for algorithm in [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
    ] {
        if matches!(
            algorithm,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
        ) {
            // RSA key generation takes up to seconds; a few samples show its order.
            group.sample_size(10);
        }
        let ca = mint::mint_ca(algorithm, "bench CA", not_before, not_after).unwrap();
        group.bench_function(BenchmarkId::from_parameter(format!("{algorithm:?}")), |b| {
            b.iter(|| {
                mint::mint_leaf(
                    algorithm,
                    &LeafRole::Client {
                        common_name: "fluent-bit",
                    },
                    &ca,
                    not_before,
                    not_after,
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, mint_leaf);
criterion_main!(benches);
