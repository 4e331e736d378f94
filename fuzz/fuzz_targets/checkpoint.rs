//! The checkpoint and signed-note parsers never panic; a checkpoint that
//! parses prints back to the same text; a note verifies only with its
//! signature intact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_merkle::{Checkpoint, NoteSigner, NoteVerifier};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = Checkpoint::parse(text) {
        assert_eq!(c.to_text(), text);
    }
    let signer = NoteSigner::from_seed("ward.fuzz/audit", &[4; 32]).expect("fixed seed");
    let verifier = NoteVerifier::new(&signer.verifier_key()).expect("own key");
    // Arbitrary notes: no panic, and no acceptance without our signature.
    if let Ok(body) = verifier.verify(text) {
        let signed = signer.sign(body).expect("body was accepted as note text");
        assert!(text.starts_with(body) && text.contains(signed.rsplit('\n').nth(1).unwrap_or("")));
    }
    // Our own signature over the input (when it is valid note text) verifies,
    // and flipping any byte of the body breaks it.
    if let Ok(note) = signer.sign(text) {
        assert_eq!(verifier.verify(&note), Ok(text));
        if !text.is_empty() {
            let mut bad = note.clone().into_bytes();
            bad[0] ^= 1;
            if let Ok(bad) = String::from_utf8(bad) {
                assert!(verifier.verify(&bad).is_err());
            }
        }
    }
});
