//! A whole request through the pipeline, in one process: a keep-alive TLS
//! client → gateway (TLS, JWT ES256, rules, proxy, audit record fsynced in
//! batches) → a real upstream on loopback, and back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("pipeline");
    for (name, extra) in [("request_es256", ""), ("request_es256_cached", "cache")] {
        let h =
            rt.block_on(async { if extra.is_empty() { common::start().await } else { common::start_cached().await } });
        let token = h.token(json!({}));
        let url = h.url("/api/x");
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let r = h.client.get(&url).bearer_auth(&token).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    r.bytes().await.unwrap()
                })
            })
        });
        rt.block_on(h.gateway.shutdown());
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
