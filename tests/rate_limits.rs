//! Rate limits under load: GCRA holds within 1 % of the configured rate,
//! allowlisted clients are never limited, shadow limits only count, and
//! 429s and allowed answers carry the RateLimit fields. A test binary of
//! its own: the other detection tests running beside it would take the
//! CPU this one measures against.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_within_one_percent_under_load_and_spare_the_allowlist() {
    let limits = "\n[[rate_limits]]\nname = \"per-ip\"\nkey = \"ip\"\nrate = 200\nper = \"1s\"\nburst = 20\n\n\
                  [[rate_limits]]\nname = \"route-budget\"\nkey = \"route\"\nrate = 1\nper = \"1s\"\nshadow = true\n";
    let w = Arc::new(world(&format!("{DETECT}{limits}")).await);
    let token = Arc::new(w.token("loadgen"));
    let run = Duration::from_secs(3);
    let start = Instant::now();
    let mut tasks = Vec::new();
    // Eight connections from one address, as fast as they can: far above 200/s.
    for _ in 0..8 {
        let (w, token) = (Arc::clone(&w), Arc::clone(&token));
        tasks.push(tokio::spawn(async move {
            let http = w.client_from("127.0.0.50");
            let (mut ok, mut limited, mut headers) = (0u64, 0u64, None);
            // (first sent, first answered, last sent, last answered)
            let mut span: Option<(Instant, Instant, Instant, Instant)> = None;
            while start.elapsed() < run {
                let sent = Instant::now();
                let r = http.get(w.gw("/api/x")).bearer_auth(token.as_str()).send().await.unwrap();
                let answered = Instant::now();
                span = Some(span.map_or((sent, answered, sent, answered), |(a, b, _, _)| (a, b, sent, answered)));
                match r.status().as_u16() {
                    200 => ok += 1,
                    429 => {
                        limited += 1;
                        headers.get_or_insert_with(|| r.headers().clone());
                    }
                    other => panic!("unexpected {other}"),
                }
            }
            (ok, limited, span.unwrap(), headers)
        }));
    }
    // Meanwhile an allowlisted client is never limited.
    let friend = w.client_from("127.0.0.250");
    let mut friend_ok = 0;
    while start.elapsed() < run {
        let r = friend.get(w.gw("/api/x")).bearer_auth(token.as_str()).send().await.unwrap();
        assert_eq!(r.status(), 200, "allowlisted clients are never limited");
        friend_ok += 1;
    }
    let (mut ok, mut limited, mut headers) = (0, 0, None);
    let mut spans = Vec::new();
    for t in tasks {
        let (o, l, span, h) = t.await.unwrap();
        ok += o;
        limited += l;
        spans.push(span);
        headers = headers.or(h);
    }
    // The gateway saw the run begin between the first send and the first
    // answer, and end between the last send and the last answer: GCRA's
    // count (burst + rate × span) lies between the two bounds.
    let first_sent = spans.iter().map(|s| s.0).min().unwrap();
    let first_answered = spans.iter().map(|s| s.1).min().unwrap();
    let last_sent = spans.iter().map(|s| s.2).max().unwrap();
    let last_answered = spans.iter().map(|s| s.3).max().unwrap();
    let low = 20.0 + 200.0 * last_sent.saturating_duration_since(first_answered).as_secs_f64();
    let high = 20.0 + 200.0 * last_answered.duration_since(first_sent).as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let got = ok as f64;
    assert!(limited > ok, "the load was far above the limit: {ok} allowed, {limited} limited");
    assert!(
        got >= (low * 0.99).floor() && got <= (high * 1.01).ceil(),
        "allowed {got}; GCRA allows {low:.1}..{high:.1}"
    );
    // Latency on a loaded machine widens the bounds; they must still mean something.
    assert!(high - low < high * 0.2, "the bounds are tight enough to mean something: {low:.1}..{high:.1}");
    assert!(friend_ok > 50, "the allowlisted client was served throughout ({friend_ok})");
    let h = headers.unwrap();
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(h["ratelimit-policy"], "\"per-ip\";q=200;w=1");
    assert!(h["ratelimit"].to_str().unwrap().starts_with("\"per-ip\";r=0;t="), "{h:?}");
    // Allowed answers say how much is left.
    let idle = w.client_from("127.0.0.51");
    let r = idle.get(w.gw("/api/x")).bearer_auth(token.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ratelimit-policy"], "\"per-ip\";q=200;w=1");
    assert_eq!(r.headers()["ratelimit"], "\"per-ip\";r=19;t=1", "a fresh client has its burst less one");
    // The shadow limit refused nothing but counted what it would have.
    let status = w.detector.status();
    let shadow = status["rate_limits"].as_array().unwrap().iter().find(|l| l["name"] == "route-budget").unwrap();
    assert!(shadow["limited"].as_u64().unwrap() > 100, "{shadow}");
    // Refusals are audited with the limit that made them.
    let records = w.records().await;
    let refusal = records.iter().find(|r| r["reason"] == "rate_limited").unwrap();
    assert_eq!((refusal["status"].as_u64(), refusal["policy"].as_str()), (Some(429), Some("rate_limit:per-ip")));
}
