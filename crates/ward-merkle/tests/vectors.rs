//! transparency-dev's RFC 6962 proof vectors (`tests/vectors/`, kept in the
//! project with their source and licence): every happy path verifies, every
//! mutated proof is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use ward_merkle::{Hash, verify_consistency, verify_inclusion};

/// How many vectors of each kind the copy holds: a lost file fails the test.
const VECTORS_PER_KIND: usize = 98;

fn corpus(kind: &str) -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(kind);
    assert!(dir.is_dir(), "Merkle vectors not found at {dir:?} (they are part of the repository)");
    let mut out = Vec::new();
    let mut pending = vec![dir.clone()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path.display().to_string(), serde_json::from_str(&text).unwrap()));
            }
        }
    }
    assert_eq!(out.len(), VECTORS_PER_KIND, "vectors in {dir:?}");
    out
}

/// A base64 hash. The vectors use a few values that are not 32 bytes
/// ("don't care" roots, garbage); Ward's `Hash` is exactly 32 bytes, so such a
/// value is mapped to a distinct stand-in derived from its bytes: equal
/// strings stay equal, different ones differ, and none equals a real hash.
/// For inclusion proofs a wrong-sized leaf hash is refused outright, as
/// transparency-dev's verifier does (`strict`).
fn hash_as(v: &Value, strict: bool) -> Option<Hash> {
    let bytes = STANDARD.decode(v.as_str().unwrap_or_default()).ok()?;
    match Hash::from_slice(&bytes) {
        Some(h) => Some(h),
        None if strict => None,
        None => Some(ward_merkle::leaf_hash(&[b"not-32-bytes:".as_slice(), &bytes].concat())),
    }
}

fn hash(v: &Value) -> Option<Hash> {
    hash_as(v, false)
}

fn proof(v: &Value) -> Option<Vec<Hash>> {
    match v {
        Value::Null => Some(Vec::new()),
        Value::Array(items) => items.iter().map(hash).collect(),
        _ => None,
    }
}

#[test]
fn inclusion_vectors() {
    let (mut good, mut bad) = (0, 0);
    for (name, v) in corpus("inclusion") {
        let want_err = v["wantErr"].as_bool().unwrap();
        let result = match (hash_as(&v["leafHash"], true), hash(&v["root"]), proof(&v["proof"])) {
            (Some(leaf), Some(root), Some(p)) => {
                verify_inclusion(v["leafIdx"].as_u64().unwrap(), v["treeSize"].as_u64().unwrap(), &leaf, &p, &root)
                    .is_ok()
            }
            _ => false,
        };
        assert_eq!(result, !want_err, "{name}");
        if want_err { bad += 1 } else { good += 1 }
    }
    assert!(good > 0 && bad > 0, "{good} good, {bad} bad");
}

#[test]
fn consistency_vectors() {
    let (mut good, mut bad) = (0, 0);
    for (name, v) in corpus("consistency") {
        let want_err = v["wantErr"].as_bool().unwrap();
        let result = match (hash(&v["root1"]), hash(&v["root2"]), proof(&v["proof"])) {
            (Some(r1), Some(r2), Some(p)) => {
                verify_consistency(v["size1"].as_u64().unwrap(), v["size2"].as_u64().unwrap(), &p, &r1, &r2).is_ok()
            }
            _ => false,
        };
        assert_eq!(result, !want_err, "{name}");
        if want_err { bad += 1 } else { good += 1 }
    }
    assert!(good > 0 && bad > 0, "{good} good, {bad} bad");
}
