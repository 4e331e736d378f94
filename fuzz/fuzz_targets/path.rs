//! The path normaliser never panics, its output is accepted again unchanged
//! (idempotent), and it never contains a dot segment or an empty segment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_policy::normalize_path;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Ok(once) = normalize_path(raw) else { return };
    assert_eq!(normalize_path(&once).as_deref(), Ok(once.as_str()));
    let inner = once.trim_end_matches('/');
    assert!(inner.split('/').skip(1).all(|s| !s.is_empty() && s != "." && s != ".."), "{once}");
});
