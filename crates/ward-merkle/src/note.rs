//! C2SP `signed-note` (Ed25519) and `tlog-checkpoint`: what a log publishes
//! so that anyone holding its public key can check what it contained.
//!
//! A note is text ending in a newline, a blank line, then one line per
//! signature: `— <name> base64(keyID[4] ‖ signature)`. The key ID is
//! `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`. A checkpoint's text is
//! `origin\nsize\nbase64(root)\n` plus optional extension lines.

use std::fmt;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::hash::Hash;

/// The signature algorithm byte for Ed25519 in C2SP keys.
const ED25519_ALG: u8 = 0x01;
/// At most this many signature lines are looked at (C2SP's limit).
pub(crate) const MAX_SIGNATURES: usize = 100;
pub(crate) const DASH: &str = "\u{2014} ";

/// Why a note, key or checkpoint is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// A key string is malformed or of another algorithm.
    #[error("malformed key: {0}")]
    BadKey(&'static str),
    /// The note text is malformed.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// A signature from the expected key does not verify.
    #[error("the signature by `{0}` does not verify")]
    BadSignature(String),
    /// No signature from the expected key is present.
    #[error("no signature by `{0}`")]
    Unsigned(String),
    /// The checkpoint body is malformed.
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(&'static str),
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// `SHA-256(name ‖ "\n" ‖ alg ‖ public key)[:4]` as a big-endian integer.
pub(crate) fn key_id_of(alg: u8, name: &str, public: &[u8]) -> u32 {
    let mut input = Vec::with_capacity(name.len() + 2 + public.len());
    input.extend_from_slice(name.as_bytes());
    input.push(b'\n');
    input.push(alg);
    input.extend_from_slice(public);
    let d = digest(&SHA256, &input);
    let b = d.as_ref();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// An Ed25519 key pair under a name, for signature type `alg` (0x01 for
/// notes, 0x04 for cosignatures): what note signers and cosigners share.
pub(crate) struct NamedKey {
    pub(crate) name: String,
    pub(crate) id: u32,
    pub(crate) key: Ed25519KeyPair,
    alg: u8,
}

impl NamedKey {
    pub(crate) fn from_seed(alg: u8, name: &str, seed: &[u8]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey("name must be non-empty, without spaces or `+`"));
        }
        let key = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| NoteError::BadKey("not an Ed25519 seed"))?;
        let id = key_id_of(alg, name, key.public_key().as_ref());
        Ok(Self { name: name.to_owned(), id, key, alg })
    }

    /// A new random key and its private key string
    /// (`PRIVATE+KEY+<name>+<id>+base64(alg ‖ seed)`).
    pub(crate) fn generate(alg: u8, name: &str) -> Result<(Self, Zeroizing<String>), NoteError> {
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            aws_lc_rs::rand::generate(&aws_lc_rs::rand::SystemRandom::new())
                .map(|r: aws_lc_rs::rand::Random<[u8; 32]>| r.expose())
                .map_err(|_| NoteError::BadKey("no randomness"))?,
        );
        let key = Self::from_seed(alg, name, seed.as_ref())?;
        let mut material = Zeroizing::new(Vec::with_capacity(33));
        material.push(alg);
        material.extend_from_slice(seed.as_ref());
        let text =
            Zeroizing::new(format!("PRIVATE+KEY+{name}+{:08x}+{}", key.id, STANDARD.encode(material.as_slice())));
        Ok((key, text))
    }

    pub(crate) fn from_private_key(alg: u8, text: &str) -> Result<Self, NoteError> {
        let rest = text.strip_prefix("PRIVATE+KEY+").ok_or(NoteError::BadKey("missing PRIVATE+KEY+ prefix"))?;
        let (name, id, material) = split_key(rest)?;
        let material = Zeroizing::new(STANDARD.decode(material).map_err(|_| NoteError::BadKey("bad base64"))?);
        let (found, seed) = material.split_first().ok_or(NoteError::BadKey("empty key"))?;
        if *found != alg || seed.len() != 32 {
            return Err(NoteError::BadKey("not an Ed25519 key of this signature type"));
        }
        let key = Self::from_seed(alg, name, seed)?;
        if key.id != id {
            return Err(NoteError::BadKey("key ID does not match the key"));
        }
        Ok(key)
    }

    /// `Debug` for the types built on it: name and key ID, never the key.
    pub(crate) fn fmt_as(&self, kind: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(kind)
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }

    /// The verifier key (`<name>+<id>+base64(alg ‖ public key)`).
    pub(crate) fn verifier_key(&self) -> String {
        let mut material = vec![self.alg];
        material.extend_from_slice(self.key.public_key().as_ref());
        format!("{}+{:08x}+{}", self.name, self.id, STANDARD.encode(material))
    }
}

/// A public key under a name, for signature type `alg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedPublic {
    pub(crate) name: String,
    pub(crate) id: u32,
    pub(crate) public: [u8; 32],
    alg: u8,
}

impl NamedPublic {
    pub(crate) fn parse(alg: u8, key: &str) -> Result<Self, NoteError> {
        let (name, id, material) = split_key(key)?;
        let material = STANDARD.decode(material).map_err(|_| NoteError::BadKey("bad base64"))?;
        let (found, public) = material.split_first().ok_or(NoteError::BadKey("empty key"))?;
        if *found != alg {
            return Err(NoteError::BadKey("not an Ed25519 key of this signature type"));
        }
        let public: [u8; 32] = public.try_into().map_err(|_| NoteError::BadKey("an Ed25519 public key is 32 bytes"))?;
        if key_id_of(alg, name, &public) != id {
            return Err(NoteError::BadKey("key ID does not match the key"));
        }
        Ok(Self { name: name.to_owned(), id, public, alg })
    }

    pub(crate) fn key(&self) -> String {
        let mut material = vec![self.alg];
        material.extend_from_slice(&self.public);
        format!("{}+{:08x}+{}", self.name, self.id, STANDARD.encode(material))
    }

    /// The signature blobs (after the key ID) of this key's lines in `note`,
    /// and the note's text. Lines of other keys are skipped.
    pub(crate) fn signatures<'a>(&self, note: &'a str) -> Result<(&'a str, Vec<Vec<u8>>), NoteError> {
        let split = note.rfind("\n\n").ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (text, sigs) = (&note[..=split], &note[split + 2..]);
        check_text(text)?;
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(NoteError::Malformed("signature lines must end with a newline"));
        }
        let mut mine = Vec::new();
        for (i, line) in sigs.lines().enumerate() {
            if i >= MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            let rest =
                line.strip_prefix(DASH).ok_or(NoteError::Malformed("a signature line starts with an em dash"))?;
            let (name, blob) =
                rest.split_once(' ').ok_or(NoteError::Malformed("signature line: name and signature"))?;
            let blob = STANDARD.decode(blob).map_err(|_| NoteError::Malformed("signature: bad base64"))?;
            if !valid_name(name) || blob.len() < 5 {
                return Err(NoteError::Malformed("signature line"));
            }
            let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
            if name == self.name && id == self.id {
                mine.push(blob[4..].to_vec());
            }
        }
        Ok((text, mine))
    }
}

/// Signs notes with an Ed25519 key under a name.
pub struct NoteSigner(NamedKey);

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_as("NoteSigner", f)
    }
}

impl NoteSigner {
    /// A signer from a 32-byte Ed25519 seed.
    ///
    /// # Errors
    /// [`NoteError::BadKey`] for a bad name or seed.
    pub fn from_seed(name: &str, seed: &[u8]) -> Result<Self, NoteError> {
        NamedKey::from_seed(ED25519_ALG, name, seed).map(Self)
    }

    /// A new random key; returns the signer and its private key string
    /// (`PRIVATE+KEY+<name>+<id>+base64(0x01 ‖ seed)`), which must be stored
    /// like any secret.
    ///
    /// # Errors
    /// [`NoteError::BadKey`] for a bad name or if randomness fails.
    pub fn generate(name: &str) -> Result<(Self, Zeroizing<String>), NoteError> {
        NamedKey::generate(ED25519_ALG, name).map(|(k, text)| (Self(k), text))
    }

    /// A signer from its private key string.
    ///
    /// # Errors
    /// [`NoteError::BadKey`] when the string is malformed or its ID does not match.
    pub fn from_private_key(text: &str) -> Result<Self, NoteError> {
        NamedKey::from_private_key(ED25519_ALG, text).map(Self)
    }

    /// The verifier key string (`<name>+<id>+base64(0x01 ‖ public key)`).
    #[must_use]
    pub fn verifier_key(&self) -> String {
        self.0.verifier_key()
    }

    /// The signer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Sign `text` (which must end in a newline) into a note.
    ///
    /// # Errors
    /// [`NoteError::Malformed`] for text that is not a valid note text.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let signature = self.0.key.sign(text.as_bytes());
        let mut blob = self.0.id.to_be_bytes().to_vec();
        blob.extend_from_slice(signature.as_ref());
        Ok(format!("{text}\n{DASH}{} {}\n", self.0.name, STANDARD.encode(blob)))
    }
}

pub(crate) fn split_key(text: &str) -> Result<(&str, u32, &str), NoteError> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::BadKey("expected name+id+key"));
    };
    if !valid_name(name) || id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return Err(NoteError::BadKey("bad name or key ID"));
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| NoteError::BadKey("bad key ID"))?;
    Ok((name, id, material))
}

pub(crate) fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("text must end with a newline"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed("control characters"));
    }
    Ok(())
}

/// Checks notes signed by one Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier(NamedPublic);

impl NoteVerifier {
    /// Parse a verifier key string.
    ///
    /// # Errors
    /// [`NoteError::BadKey`] when malformed, not Ed25519, or its ID does not match.
    pub fn new(key: &str) -> Result<Self, NoteError> {
        NamedPublic::parse(ED25519_ALG, key).map(Self)
    }

    /// The verifier key string this verifier was made from.
    #[must_use]
    pub fn key(&self) -> String {
        self.0.key()
    }

    /// Verify a note; returns its text. Signatures by other keys are
    /// ignored; one by this key must be present and valid.
    ///
    /// # Errors
    /// [`NoteError`] for a malformed note, a bad signature, or none by this key.
    pub fn verify<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let (text, mine) = self.0.signatures(note)?;
        if mine.is_empty() {
            return Err(NoteError::Unsigned(self.0.name.clone()));
        }
        for signature in &mine {
            UnparsedPublicKey::new(&ED25519, &self.0.public)
                .verify(text.as_bytes(), signature)
                .map_err(|_| NoteError::BadSignature(self.0.name.clone()))?;
        }
        Ok(text)
    }
}

/// A `tlog-checkpoint` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (unique name of the log).
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash at that size.
    pub root: Hash,
    /// Extension lines (without newlines), kept as given.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n` then extensions.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root.as_bytes()));
        for e in &self.extensions {
            out.push_str(e);
            out.push('\n');
        }
        out
    }

    /// Parse a checkpoint body (strictly: decimal size without leading zeros,
    /// a 32-byte root, no empty lines).
    ///
    /// # Errors
    /// [`NoteError::BadCheckpoint`] naming the problem.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        check_text(text).map_err(|_| NoteError::BadCheckpoint("must end with a newline, no control characters"))?;
        let mut lines = text[..text.len() - 1].split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or(NoteError::BadCheckpoint("empty origin"))?;
        let size = lines.next().ok_or(NoteError::BadCheckpoint("missing size"))?;
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return Err(NoteError::BadCheckpoint("size is not a canonical decimal"));
        }
        let size = size.parse().map_err(|_| NoteError::BadCheckpoint("size out of range"))?;
        let root = lines.next().ok_or(NoteError::BadCheckpoint("missing root"))?;
        let root = STANDARD
            .decode(root)
            .ok()
            .and_then(|b| Hash::from_slice(&b))
            .ok_or(NoteError::BadCheckpoint("root is not base64 of 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(NoteError::BadCheckpoint("empty extension line"));
        }
        Ok(Self { origin: origin.to_owned(), size, root, extensions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // golang.org/x/mod/sumdb/note's example key and note (also in C2SP's tests).
    const PETER_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_TEXT: &str =
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const PETER_SIG: &str =
        "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";
    // C2SP signed-note specification example.
    const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    #[test]
    fn reproduces_and_verifies_the_reference_notes() {
        let signer = NoteSigner::from_private_key(PETER_SKEY).unwrap();
        assert_eq!(signer.verifier_key(), PETER_VKEY);
        assert_eq!(NoteVerifier::new(PETER_VKEY).unwrap().key(), PETER_VKEY);
        let note = signer.sign(PETER_TEXT).unwrap();
        assert_eq!(note, format!("{PETER_TEXT}\n\u{2014} PeterNeumann {PETER_SIG}\n"), "Ed25519 is deterministic");
        assert_eq!(NoteVerifier::new(PETER_VKEY).unwrap().verify(&note).unwrap(), PETER_TEXT);
        let spec = NoteVerifier::new(SPEC_VKEY).unwrap();
        assert_eq!(spec.verify(SPEC_NOTE).unwrap(), "This is an example message.\n");
    }

    #[test]
    fn refuses_tampering_and_foreign_keys() {
        let v = NoteVerifier::new(SPEC_VKEY).unwrap();
        assert!(matches!(
            v.verify(&SPEC_NOTE.replace("example message", "example massage")),
            Err(NoteError::BadSignature(_))
        ));
        assert!(matches!(NoteVerifier::new(PETER_VKEY).unwrap().verify(SPEC_NOTE), Err(NoteError::Unsigned(_))));
        assert!(v.verify(&SPEC_NOTE.replace('\u{2014}', "-")).is_err());
        assert!(v.verify("no signatures\n").is_err());
        for bad in [
            "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example.com/foo+530d903a+AukyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example.com/foo+530d903a",
            "exa mple+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        ] {
            assert!(NoteVerifier::new(bad).is_err(), "{bad}");
        }
        assert!(NoteSigner::from_private_key(&PETER_SKEY.replace("c74f20a3", "c74f20a4")).is_err());
    }

    #[test]
    fn generated_keys_round_trip() {
        let (signer, private) = NoteSigner::generate("ward.local/audit").unwrap();
        let again = NoteSigner::from_private_key(&private).unwrap();
        assert_eq!(again.verifier_key(), signer.verifier_key());
        let cp =
            Checkpoint { origin: "ward.local/audit".into(), size: 7, root: crate::leaf_hash(b"x"), extensions: vec![] };
        let note = signer.sign(&cp.to_text()).unwrap();
        let text = NoteVerifier::new(&signer.verifier_key()).unwrap().verify(&note).unwrap();
        assert_eq!(Checkpoint::parse(text).unwrap(), cp);
        assert!(format!("{signer:?}").contains("ward.local/audit") && !format!("{signer:?}").contains("PRIVATE"));
    }

    #[test]
    fn checkpoints_parse_strictly() {
        let root = STANDARD.encode([1u8; 32]);
        let ok = Checkpoint::parse(&format!("log\n10\n{root}\nx-ext 1\n")).unwrap();
        assert_eq!((ok.size, ok.extensions.len()), (10, 1));
        for bad in [
            format!("log\n010\n{root}\n"),
            format!("log\n-1\n{root}\n"),
            format!("\n1\n{root}\n"),
            format!("log\n1\n{root}"),
            "log\n1\nAAAA\n".to_owned(),
            format!("log\n1\n{root}\n\n"),
            format!("log\n18446744073709551616\n{root}\n"),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
