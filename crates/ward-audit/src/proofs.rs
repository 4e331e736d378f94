//! Proof documents: the JSON `ward audit prove` / `consistency` print and
//! the admin API serves, and the check `ward audit verify-proof` runs.
//!
//! ```json
//! {"type":"inclusion","index":7,"size":300,"leaf_hash":"<b64>","proof":["<b64>",…],
//!  "checkpoint":"<signed note of size 300>"}            // or "root" when unanchored
//! {"type":"consistency","from":100,"to":300,"from_root":"<b64>","proof":[…],
//!  "checkpoint":"<signed note of size 300>"}
//! ```
//!
//! A document is trusted only through its signed checkpoint: `check`
//! refuses one that carries a bare root.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use ward_merkle::{
    Hash, NodeSource, NoteVerifier, consistency_proof, inclusion_proof, leaf_hash, subtree_root, verify_consistency,
    verify_inclusion,
};

use crate::checkpoints::SignedCheckpoint;

fn b64(h: &Hash) -> String {
    STANDARD.encode(h.as_bytes())
}

fn unb64(v: &Value, what: &str) -> Result<Hash, String> {
    v.as_str()
        .and_then(|s| STANDARD.decode(s).ok())
        .and_then(|b| Hash::from_slice(&b))
        .ok_or_else(|| format!("`{what}` is not base64 of 32 bytes"))
}

/// Anchor `doc` in `anchor` when it is for `size`, else give the bare root.
fn anchor_at(
    doc: &mut Value,
    tree: &impl NodeSource,
    size: u64,
    anchor: Option<&SignedCheckpoint>,
) -> Result<(), String> {
    match anchor.filter(|c| c.checkpoint.size == size) {
        Some(c) => doc["checkpoint"] = Value::String(c.note.clone()),
        None => doc["root"] = Value::String(b64(&subtree_root(tree, 0, size).map_err(|e| e.to_string())?)),
    }
    Ok(())
}

/// An inclusion proof document for record `index` in the tree of `size`.
///
/// # Errors
/// A message when the index or size is out of range or the tree lacks a node.
pub fn inclusion(
    tree: &impl NodeSource,
    index: u64,
    size: u64,
    anchor: Option<&SignedCheckpoint>,
) -> Result<Value, String> {
    let proof = inclusion_proof(tree, index, size).map_err(|e| format!("index {index} in size {size}: {e}"))?;
    let leaf = tree.node(0, index).ok_or("the tree does not hold that leaf")?;
    let mut doc = json!({
        "type": "inclusion",
        "index": index,
        "size": size,
        "leaf_hash": b64(&leaf),
        "proof": proof.iter().map(b64).collect::<Vec<_>>(),
    });
    anchor_at(&mut doc, tree, size, anchor)?;
    Ok(doc)
}

/// A consistency proof document between sizes `from` and `to`.
///
/// # Errors
/// A message when the sizes are out of range or the tree lacks a node.
pub fn consistency(
    tree: &impl NodeSource,
    from: u64,
    to: u64,
    anchor: Option<&SignedCheckpoint>,
) -> Result<Value, String> {
    let proof = consistency_proof(tree, from, to).map_err(|e| format!("from {from} to {to}: {e}"))?;
    let mut doc = json!({
        "type": "consistency",
        "from": from,
        "to": to,
        "from_root": b64(&subtree_root(tree, 0, from).map_err(|e| e.to_string())?),
        "proof": proof.iter().map(b64).collect::<Vec<_>>(),
    });
    anchor_at(&mut doc, tree, to, anchor)?;
    Ok(doc)
}

/// Check a proof document against the log's key. For a consistency proof,
/// `older` is the signed checkpoint the checker kept (else the document's
/// own `from_root` is used, which proves only that the log is an extension
/// of *some* tree of that size). Returns a one-line summary.
///
/// # Errors
/// A message naming what does not verify.
pub fn check(doc: &Value, verifier: &NoteVerifier, older: Option<&SignedCheckpoint>) -> Result<String, String> {
    let (size_key, kind) = match doc["type"].as_str() {
        Some("inclusion") => ("size", true),
        Some("consistency") => ("to", false),
        _ => return Err("`type` must be `inclusion` or `consistency`".into()),
    };
    let size = doc[size_key].as_u64().ok_or(format!("`{size_key}` missing"))?;
    let Some(note) = doc["checkpoint"].as_str() else {
        return Err("the proof is not anchored in a signed checkpoint (prove at a checkpoint's size)".into());
    };
    let anchor = SignedCheckpoint::verify(note, verifier).map_err(|e| format!("checkpoint: {e}"))?;
    if anchor.checkpoint.size != size {
        return Err(format!("the checkpoint is for size {}, the proof for {size}", anchor.checkpoint.size));
    }
    let root = anchor.checkpoint.root;
    let proof: Vec<Hash> = doc["proof"]
        .as_array()
        .ok_or("`proof` missing")?
        .iter()
        .map(|h| unb64(h, "proof"))
        .collect::<Result<_, _>>()?;
    if kind {
        let index = doc["index"].as_u64().ok_or("`index` missing")?;
        let leaf = unb64(&doc["leaf_hash"], "leaf_hash")?;
        if let Some(record) = doc["record"].as_str()
            && leaf_hash(record.as_bytes()) != leaf
        {
            return Err("the record does not hash to `leaf_hash`".into());
        }
        verify_inclusion(index, size, &leaf, &proof, &root).map_err(|e| format!("inclusion proof fails: {e}"))?;
        Ok(format!("ok: record {index} is in the log of size {size} (signed checkpoint)\n"))
    } else {
        let from = doc["from"].as_u64().ok_or("`from` missing")?;
        let (from_root, anchored) = match older {
            Some(c) if c.checkpoint.size != from => {
                return Err(format!("the kept checkpoint is for size {}, the proof from {from}", c.checkpoint.size));
            }
            Some(c) => (c.checkpoint.root, true),
            None => (unb64(&doc["from_root"], "from_root")?, false),
        };
        verify_consistency(from, size, &proof, &from_root, &root)
            .map_err(|e| format!("consistency proof fails: {e}"))?;
        if anchored {
            Ok(format!("ok: the log of size {size} extends the signed checkpoint of size {from} you kept\n"))
        } else {
            // The start is the document's own unsigned root: this proves the
            // log extends *a* tree of that size, not the one anyone saw.
            Err(format!(
                "unanchored: the log of size {size} extends a tree of size {from} whose root only this document gives; pass --from-checkpoint with a checkpoint of size {from} you kept to anchor it"
            ))
        }
    }
}
