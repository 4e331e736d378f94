//! Opening and sealing a session-sized value (the gateway does one open per
//! request on a `login` route, and a seal when the idle clock slides).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use ward_crypto::{Sealer, SecretBytes};

fn bench(c: &mut Criterion) {
    let sealer = Sealer::new(&SecretBytes::new(vec![7; 32])).unwrap();
    // About what a session with an ID token's usual claims serialises to.
    let session = vec![b'x'; 600];
    let sealed = sealer.seal(b"ward-session-v1", &session).unwrap();
    let mut g = c.benchmark_group("aead");
    g.bench_function("open_600B", |b| b.iter(|| sealer.open(b"ward-session-v1", &sealed).unwrap()));
    g.bench_function("seal_600B", |b| b.iter(|| sealer.seal(b"ward-session-v1", &session).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
