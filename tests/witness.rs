//! Witness cosignatures (C2SP tlog-cosignature/v1) against a verifier and a
//! signer written from the specification in Python (`tests/witness/`),
//! sharing no code with Ward: what Ward's cosigners write, anyone's
//! verifier reads, and the reverse.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ward_merkle::{CosignatureVerifier, Cosigner, NoteSigner, NoteVerifier};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/witness/cosignature.py");

fn checkpoint_note() -> String {
    let log = NoteSigner::from_seed("ward.test/audit", &[3; 32]).unwrap();
    log.sign("ward.test/audit\n300\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n").unwrap()
}

#[test]
fn wards_cosignatures_verify_with_a_verifier_written_from_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let note = checkpoint_note();
    let witness = Cosigner::from_seed("witness.example.com/w1", &[4; 32]).unwrap();
    let text = format!("{}\n", note.split("\n\n").next().unwrap());
    let cosigned = format!("{note}{}", witness.cosign(&text, 1_679_315_147).unwrap());
    let path = dir.path().join("note");
    std::fs::write(&path, &cosigned).unwrap();
    let out = common::python(&["cryptography"])
        .args([SCRIPT, "verify", path.to_str().unwrap(), &witness.verifier_key()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1679315147");
    // A tampered checkpoint fails there too.
    std::fs::write(&path, cosigned.replace("\n300\n", "\n301\n")).unwrap();
    let out = common::python(&["cryptography"])
        .args([SCRIPT, "verify", path.to_str().unwrap(), &witness.verifier_key()])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn cosignatures_from_a_signer_written_from_the_spec_verify_in_ward() {
    let dir = tempfile::tempdir().unwrap();
    let note = checkpoint_note();
    let path = dir.path().join("note");
    std::fs::write(&path, &note).unwrap();
    let out = common::python(&["cryptography"])
        .args([SCRIPT, "sign", path.to_str().unwrap(), "witness.example.org/py", &"07".repeat(32), "1700000000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (cosigned, vkey) = stdout.rsplit_once("VKEY ").unwrap();
    let verifier = CosignatureVerifier::new(vkey.trim()).unwrap();
    assert_eq!(verifier.verify(cosigned), Ok(1_700_000_000));
    // The log's signature is untouched by the cosignature line.
    let log = NoteVerifier::new(&NoteSigner::from_seed("ward.test/audit", &[3; 32]).unwrap().verifier_key()).unwrap();
    assert!(log.verify(cosigned).is_ok());
}
