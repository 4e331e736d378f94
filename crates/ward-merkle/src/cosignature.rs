//! C2SP `tlog-cosignature` v1 (Ed25519): a witness's statement that, as of
//! a time, the largest consistent checkpoint it has seen of a log has this
//! root. A cosignature is a signed-note signature line
//!
//! ```text
//! — <witness name> base64(keyID[4] ‖ timestamp[8, big-endian] ‖ Ed25519 signature[64])
//! ```
//!
//! over the message `cosignature/v1\ntime <timestamp>\n<checkpoint text>`;
//! the key ID is `SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)[:4]`, so a
//! cosigner key can never pass for a log's own (0x01) key or the reverse.

use std::fmt;

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::note::{DASH, NamedKey, NamedPublic, NoteError, check_text};

/// The signature type byte of Ed25519 cosignatures (`cosignature/v1`).
pub const COSIGNATURE_V1: u8 = 0x04;

/// The largest timestamp a cosignature may carry (2^63 - 1).
const MAX_TIMESTAMP: u64 = i64::MAX as u64;

fn message(text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{text}")
}

/// A witness's signing key.
pub struct Cosigner(NamedKey);

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_as("Cosigner", f)
    }
}

impl Cosigner {
    /// A cosigner from a 32-byte Ed25519 seed.
    ///
    /// # Errors
    /// [`NoteError::BadKey`] for a bad name or seed.
    pub fn from_seed(name: &str, seed: &[u8]) -> Result<Self, NoteError> {
        NamedKey::from_seed(COSIGNATURE_V1, name, seed).map(Self)
    }

    /// A new cosigner and its private key string
    /// (`PRIVATE+KEY+<name>+<id>+base64(0x04 ‖ seed)`), to be stored 0600.
    ///
    /// # Errors
    /// [`NoteError::BadKey`] for a bad name, or no randomness.
    pub fn generate(name: &str) -> Result<(Self, Zeroizing<String>), NoteError> {
        NamedKey::generate(COSIGNATURE_V1, name).map(|(k, text)| (Self(k), text))
    }

    /// A cosigner from its private key string.
    ///
    /// # Errors
    /// [`NoteError::BadKey`] when malformed, of another type, or its ID does not match.
    pub fn from_private_key(text: &str) -> Result<Self, NoteError> {
        NamedKey::from_private_key(COSIGNATURE_V1, text).map(Self)
    }

    /// The verifier key (`<name>+<id>+base64(0x04 ‖ public key)`).
    #[must_use]
    pub fn verifier_key(&self) -> String {
        self.0.verifier_key()
    }

    /// The cosigner's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The cosignature line (with its newline) for a checkpoint `text` (the
    /// note text, ending in a newline, without signature lines) at `timestamp`.
    ///
    /// # Errors
    /// [`NoteError::Malformed`] for text that is not a note text or a
    /// timestamp past 2^63 - 1.
    pub fn cosign(&self, text: &str, timestamp: u64) -> Result<String, NoteError> {
        check_text(text)?;
        if timestamp > MAX_TIMESTAMP {
            return Err(NoteError::Malformed("timestamp past 2^63 - 1"));
        }
        let signature = self.0.key.sign(message(text, timestamp).as_bytes());
        let mut blob = Vec::with_capacity(76);
        blob.extend_from_slice(&self.0.id.to_be_bytes());
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(signature.as_ref());
        Ok(format!("{DASH}{} {}\n", self.0.name, STANDARD.encode(blob)))
    }
}

/// Checks one witness's cosignatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureVerifier(NamedPublic);

impl CosignatureVerifier {
    /// Parse a cosigner's verifier key (type 0x04).
    ///
    /// # Errors
    /// [`NoteError::BadKey`] when malformed, of another type, or its ID does not match.
    pub fn new(key: &str) -> Result<Self, NoteError> {
        NamedPublic::parse(COSIGNATURE_V1, key).map(Self)
    }

    /// The verifier key string.
    #[must_use]
    pub fn key(&self) -> String {
        self.0.key()
    }

    /// The cosigner's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The timestamp of this witness's cosignature on `note` (a checkpoint
    /// with its signature lines; the latest, if it has several). Lines of
    /// other keys are ignored, as the signed-note format requires; one of
    /// this key must be present, and every one of it valid.
    ///
    /// # Errors
    /// [`NoteError`] for a malformed note or line, a bad cosignature, or none.
    pub fn verify(&self, note: &str) -> Result<u64, NoteError> {
        let (text, mine) = self.0.signatures(note)?;
        let mut found = None;
        for blob in &mine {
            // timestamp[8] ‖ signature[64], after the key ID.
            if blob.len() != 8 + 64 {
                return Err(NoteError::BadSignature(self.0.name.clone()));
            }
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&blob[..8]);
            let timestamp = u64::from_be_bytes(ts);
            if timestamp > MAX_TIMESTAMP {
                return Err(NoteError::BadSignature(self.0.name.clone()));
            }
            UnparsedPublicKey::new(&ED25519, &self.0.public)
                .verify(message(text, timestamp).as_bytes(), &blob[8..])
                .map_err(|_| NoteError::BadSignature(self.0.name.clone()))?;
            found = Some(found.map_or(timestamp, |t: u64| t.max(timestamp)));
        }
        found.ok_or_else(|| NoteError::Unsigned(self.0.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoteSigner;

    fn checkpoint() -> (NoteSigner, String) {
        let log = NoteSigner::from_seed("example.com/log", &[1; 32]).unwrap_or_else(|_| unreachable!());
        let note = log.sign("example.com/log\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n");
        (log, note.unwrap_or_default())
    }

    #[test]
    fn cosignatures_round_trip_and_bind_the_checkpoint_and_time() {
        let (log, note) = checkpoint();
        let w = Cosigner::from_seed("witness.example.com/w1", &[2; 32]).unwrap_or_else(|_| unreachable!());
        let text = note.split("\n\n").next().map(|t| format!("{t}\n")).unwrap_or_default();
        let line = w.cosign(&text, 1_679_315_147).unwrap_or_default();
        let cosigned = format!("{note}{line}");
        let v = CosignatureVerifier::new(&w.verifier_key()).unwrap_or_else(|_| unreachable!());
        assert_eq!(v.verify(&cosigned), Ok(1_679_315_147));
        // The log's own signature still verifies beside it.
        assert!(crate::NoteVerifier::new(&log.verifier_key()).is_ok_and(|lv| lv.verify(&cosigned).is_ok()));
        // Another checkpoint, or another time, does not carry it.
        let other = cosigned.replace("20852163", "20852164");
        assert!(matches!(v.verify(&other), Err(NoteError::BadSignature(_))));
        // The blob is keyID ‖ time ‖ signature: change the time, fail.
        let blob = line.trim_end().rsplit(' ').next().unwrap_or_default();
        let mut raw = STANDARD.decode(blob).unwrap_or_default();
        raw[11] ^= 1;
        let forged = cosigned.replace(blob, &STANDARD.encode(raw));
        assert!(matches!(v.verify(&forged), Err(NoteError::BadSignature(_))));
        // Without its line: unsigned.
        assert!(matches!(v.verify(&note), Err(NoteError::Unsigned(_))));
    }

    #[test]
    fn a_cosigner_key_is_never_a_log_key_and_keys_round_trip() {
        let (w, private) = Cosigner::generate("witness.example.com/w2").unwrap_or_else(|_| unreachable!());
        let again = Cosigner::from_private_key(&private).unwrap_or_else(|_| unreachable!());
        assert_eq!(again.verifier_key(), w.verifier_key());
        // Type 0x04 is refused as a log key, and a log key (0x01) as a cosigner's.
        assert!(crate::NoteVerifier::new(&w.verifier_key()).is_err());
        let (log, _) = checkpoint();
        assert!(CosignatureVerifier::new(&log.verifier_key()).is_err());
        assert!(Cosigner::from_private_key(private.replace("+", " ").as_str()).is_err());
    }
}
