//! `ward audit …` against real logs: proofs round-trip through the CLI, and
//! `ward audit verify` catches every kind of tampering, naming the first bad
//! record (the consistent rewrite through a saved checkpoint).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::SystemTime;

use ward_audit::segments::{self, file_name};
use ward_audit::{AuditLog, LogOptions, frame};
use ward_merkle::NoteSigner;

const CONFIG: &str = r#"
[gateway]
listen = "127.0.0.1:0"
[gateway.tls]
cert_file = "server.crt"
key_file = "server.key"
[audit]
dir = "audit"
origin = "ward.test/cli"
hmac_key_file = "audit.key"
checkpoint_key_file = "checkpoint.key"
[[providers]]
name = "p"
issuer = "https://issuer.test"
audiences = ["a"]
jwks_file = "jwks.json"
[[upstreams]]
name = "u"
url = "http://127.0.0.1:9"
[[routes]]
name = "r"
prefix = "/"
upstream = "u"
"#;

struct Fixture {
    dir: tempfile::TempDir,
    key: String,
}

impl Fixture {
    /// A log of `n` records with a checkpoint after every 100.
    fn new(n: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("audit.key"), [5u8; 32]).unwrap();
        let (signer, key) = NoteSigner::generate("ward.test/cli").unwrap();
        // The verifier key is pinned in the configuration, apart from the log.
        let pinned =
            format!("checkpoint_key_file = \"checkpoint.key\"\nverifier_keys = [\"{}\"]\n", signer.verifier_key());
        std::fs::write(
            dir.path().join("ward.toml"),
            CONFIG.replace("checkpoint_key_file = \"checkpoint.key\"\n", &pinned),
        )
        .unwrap();
        std::fs::write(dir.path().join("checkpoint.key"), key.as_bytes()).unwrap();
        let f = Self { dir, key: key.to_string() };
        f.append((0..n).map(record).collect());
        f
    }

    fn log_dir(&self) -> PathBuf {
        self.dir.path().join("audit")
    }

    fn append(&self, records: Vec<Vec<u8>>) {
        let signer = NoteSigner::from_private_key(&self.key).unwrap();
        let (mut log, _) = AuditLog::open(&self.log_dir(), signer, LogOptions::new("ward.test/cli")).unwrap();
        for chunk in records.chunks(100) {
            log.append(chunk.iter().map(Vec::as_slice)).unwrap();
            log.checkpoint(SystemTime::now()).unwrap();
        }
    }

    fn ward(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ward"))
            .arg("audit")
            .args(args)
            .arg("--config")
            .arg(self.dir.path().join("ward.toml"))
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ward(args);
        assert!(out.status.success(), "ward audit {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// `ward audit verify` must fail; returns its output.
    fn verify_fails(&self, extra: &[&str]) -> String {
        let out = self.ward(&[&["verify"], extra].concat());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!out.status.success(), "tampering went unnoticed:\n{text}");
        assert!(text.contains("FAILED verification"), "{text}");
        text
    }

    fn segment(&self) -> PathBuf {
        self.log_dir().join("segments").join(file_name(0))
    }

    /// Rewrite the records as an attacker would: valid frames, fresh checksums.
    fn rewrite(&self, edit: impl FnOnce(&mut Vec<Vec<u8>>)) {
        let bytes = std::fs::read(self.segment()).unwrap();
        let frames = segments::scan(&bytes).unwrap().frames;
        let mut records: Vec<Vec<u8>> = frames.iter().map(|(_, f)| f.payload.to_vec()).collect();
        edit(&mut records);
        let mut out = frame::header(0).to_vec();
        for r in &records {
            frame::encode(r, &mut out).unwrap();
        }
        std::fs::write(self.segment(), out).unwrap();
    }
}

fn record(i: u64) -> Vec<u8> {
    let decision = if i.is_multiple_of(3) { "deny" } else { "allow" };
    format!(
        r#"{{"schema":"ward.audit.v2","event":"request","time":"2026-11-23T10:{:02}:00.000Z","request_id":"r{i}","decision":"{decision}","principal_hmac":"{}"}}"#,
        i % 60,
        if i.is_multiple_of(2) { "aaaa" } else { "bbbb" }
    )
    .into_bytes()
}

fn first_bad(text: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix("first bad record: ")).unwrap_or_else(|| panic!("{text}")).parse().unwrap()
}

#[test]
fn proofs_round_trip_through_the_cli_and_wrong_ones_fail() {
    let f = Fixture::new(300);
    let verify = f.ok(&["verify"]);
    assert!(
        verify.contains("checked records 0..300; 3 of 3 checkpoints verified") && verify.ends_with("ok\n"),
        "{verify}"
    );
    assert!(verify.starts_with("trust root: pinned key(s) ward.test/cli+"), "{verify}");

    let checkpoint = f.ok(&["checkpoint"]);
    assert!(
        checkpoint.starts_with("ward.test/cli\n300\n") && checkpoint.contains("\n\u{2014} ward.test/cli "),
        "{checkpoint}"
    );

    let proof = f.ok(&["prove", "--index", "123"]);
    let path = f.dir.path().join("proof.json");
    std::fs::write(&path, &proof).unwrap();
    let out = f.ok(&["verify-proof", path.to_str().unwrap()]);
    assert!(out.contains("\nok: record 123 is in the log of size 300"), "{out}");
    // An auditor with only the proof and the verifier key.
    let vkey = std::fs::read_to_string(f.log_dir().join("checkpoint.vkey")).unwrap();
    let alone = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["audit", "--data-dir", "/nonexistent", "verify-proof", path.to_str().unwrap(), "--vkey", vkey.trim()])
        .output()
        .unwrap();
    assert!(alone.status.success(), "{}", String::from_utf8_lossy(&alone.stderr));

    // A doctored record, index, or proof is refused.
    let mut v: serde_json::Value = serde_json::from_str(&proof).unwrap();
    for (field, value) in [("record", serde_json::json!("{\"forged\":1}")), ("index", serde_json::json!(124))] {
        let mut bad = v.clone();
        bad[field] = value;
        std::fs::write(&path, bad.to_string()).unwrap();
        assert!(!f.ward(&["verify-proof", path.to_str().unwrap()]).status.success(), "{field}");
    }
    v["proof"][0] = v["proof"][1].clone();
    std::fs::write(&path, v.to_string()).unwrap();
    assert!(!f.ward(&["verify-proof", path.to_str().unwrap()]).status.success());

    // Consistency from an older checkpoint the auditor kept.
    let old = f.dir.path().join("old.checkpoint");
    std::fs::write(&old, &checkpoint).unwrap();
    f.append((300..450).map(record).collect());
    let c = f.ok(&["consistency", "--from", "300"]);
    std::fs::write(&path, &c).unwrap();
    let out = f.ok(&["verify-proof", path.to_str().unwrap(), "--from-checkpoint", old.to_str().unwrap()]);
    assert!(out.contains("\nok: the log of size 450 extends the signed checkpoint of size 300"), "{out}");
    // Without a kept checkpoint the start is only the document's word.
    let out = f.ward(&["verify-proof", path.to_str().unwrap()]);
    assert!(!out.status.success(), "an unanchored consistency proof is not a success");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unanchored:"));
    assert!(
        f.ok(&["verify", "--from-checkpoint", old.to_str().unwrap()]).contains("consistent with the saved checkpoint")
    );
}

#[test]
fn hash_query_and_tail_read_the_log() {
    let f = Fixture::new(120);
    let tag = f.ok(&["hash", "alice@example.com"]);
    let hasher = ward_crypto::KeyedHasher::new(&ward_crypto::SecretBytes::new(vec![5u8; 32])).unwrap();
    assert_eq!(tag.trim(), hasher.tag_hex(b"alice@example.com"));

    let lines =
        |s: String| s.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect::<Vec<_>>();
    let denied = lines(f.ok(&["query", "--decision", "deny", "--principal-hash", "aaaa"]));
    assert_eq!(denied.len(), 20, "indices ≡ 0 mod 6");
    assert!(denied.iter().all(|r| r["index"].as_u64().unwrap() % 6 == 0));
    let window = lines(f.ok(&["query", "--since", "2026-11-23T10:10", "--until", "2026-11-23T10:12"]));
    assert_eq!(window.len(), 4, "minutes 10 and 11, twice each");
    let tail = lines(f.ok(&["tail", "-n", "3"]));
    assert_eq!(tail.iter().map(|r| r["index"].as_u64().unwrap()).collect::<Vec<_>>(), [117, 118, 119]);
}

#[test]
fn a_flipped_byte_is_found() {
    let f = Fixture::new(300);
    let mut bytes = std::fs::read(f.segment()).unwrap();
    let frames = segments::scan(&bytes).unwrap().frames;
    let at = frames[77].0 + 30;
    bytes[at] ^= 0x20;
    std::fs::write(f.segment(), bytes).unwrap();
    assert_eq!(first_bad(&f.verify_fails(&[])), 77);
}

#[test]
fn deleted_inserted_reordered_and_truncated_records_are_found() {
    type Edit = fn(&mut Vec<Vec<u8>>);
    let cases: [(Edit, u64); 4] = [
        (|r| drop(r.remove(150)), 150),
        (|r| r.insert(42, b"{\"forged\":true}".to_vec()), 42),
        (|r| r.swap(200, 201), 200),
        (|r| r.truncate(290), 290),
    ];
    for (edit, index) in cases {
        let f = Fixture::new(300);
        f.rewrite(edit);
        assert_eq!(first_bad(&f.verify_fails(&[])), index);
    }
}

#[test]
fn a_consistent_rewrite_fails_the_consistency_proof_to_a_saved_checkpoint() {
    let f = Fixture::new(300);
    let saved = f.dir.path().join("saved.checkpoint");
    std::fs::write(&saved, f.ok(&["checkpoint"])).unwrap();

    // The attacker has the machine and the key: rewrites record 10, and
    // rebuilds the tree and every checkpoint so the log agrees with itself.
    f.rewrite(|r| r[10] = b"{\"decision\":\"allow\",\"rewritten\":true}".to_vec());
    for gone in ["tree", "checkpoints.log", "checkpoint"] {
        let p = f.log_dir().join(gone);
        if p.is_dir() { std::fs::remove_dir_all(p).unwrap() } else { std::fs::remove_file(p).unwrap() }
    }
    f.append(vec![record(300)]);
    assert!(f.ok(&["verify"]).ends_with("ok\n"), "self-consistent without outside evidence");

    let text = f.verify_fails(&["--from-checkpoint", saved.to_str().unwrap()]);
    assert!(text.contains("NOT consistent with the saved checkpoint"), "{text}");
    assert!(text.contains("the consistency proof to size 301 fails"), "{text}");
}

#[test]
fn verify_needs_the_key_the_log_was_signed_with() {
    let f = Fixture::new(10);
    let (other, _) = NoteSigner::generate("ward.test/cli").unwrap();
    let text = f.verify_fails(&["--vkey", &other.verifier_key()]);
    assert!(text.contains("checkpoint #0"), "{text}");
}

#[test]
fn tail_follow_prints_new_records_as_they_are_appended() {
    use std::io::{BufRead, BufReader};
    let f = Fixture::new(5);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["audit", "tail", "-n", "1", "-f", "--config"])
        .arg(f.dir.path().join("ward.toml"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["index"], 4);
    f.append((5..8).map(record).collect());
    for want in 5..8 {
        let v: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!((v["index"].as_u64(), v["request_id"].as_str()), (Some(want), Some(format!("r{want}").as_str())));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Issue 17, item 12: a filter value that can never match is refused (it
/// used to print nothing and exit 0, which reads as "no denials"); `keygen`
/// makes the directory it writes into; `| head` ends `query` quietly.
#[test]
fn bad_filters_are_refused_keygen_makes_its_directory_and_a_closed_pipe_is_quiet() {
    let f = Fixture::new(3000);
    for args in [
        ["query", "--decision", "DENY"],
        ["query", "--since", "yesterday"],
        ["query", "--event", "requests"],
        ["query", "--until", "2026-1-1"],
    ] {
        let out = f.ward(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(args[1]), "{args:?}: the option is named");
    }
    let key = f.dir.path().join("new/keys/checkpoint2.key");
    let out = f.ward(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let script = format!(
        "{} audit query --config {} | head -n 1 > /dev/null; echo ${{PIPESTATUS[0]}}",
        env!("CARGO_BIN_EXE_ward"),
        f.dir.path().join("ward.toml").display()
    );
    let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Issue 18, item 4: a proof at the size of an older signed checkpoint
/// carries that checkpoint, and verifies.
#[test]
fn proofs_at_an_older_checkpoint_are_anchored_in_it() {
    let f = Fixture::new(300);
    let proof = f.ok(&["prove", "--index", "7", "--size", "200"]);
    let v: serde_json::Value = serde_json::from_str(&proof).unwrap();
    assert!(v["checkpoint"].as_str().is_some_and(|c| c.starts_with("ward.test/cli\n200\n")), "{proof}");
    let path = f.dir.path().join("proof.json");
    std::fs::write(&path, &proof).unwrap();
    let out = f.ok(&["verify-proof", path.to_str().unwrap()]);
    assert!(out.contains("\nok: record 7 is in the log of size 200"), "{out}");
    // A size no checkpoint was signed at stays unanchored, and is refused.
    let proof = f.ok(&["prove", "--index", "7", "--size", "150"]);
    std::fs::write(&path, &proof).unwrap();
    assert!(!f.ward(&["verify-proof", path.to_str().unwrap()]).status.success());
}

/// Issue 18, item 1: the verifier key comes from outside the log
/// directory. An attacker without the signing key rewrites a record,
/// re-signs every checkpoint with a fresh key of the same name and replaces
/// `checkpoint.vkey`: the pinned key refuses the log; the local key would
/// have said ok, and is used only when asked, saying so.
#[test]
fn a_rewrite_re_signed_with_a_fresh_key_fails_against_the_pinned_key() {
    let f = Fixture::new(300);
    f.rewrite(|r| r[120] = b"{\"decision\":\"allow\",\"forged\":true}".to_vec());
    let dir = f.log_dir();
    std::fs::remove_dir_all(dir.join("tree")).unwrap();
    std::fs::remove_file(dir.join("checkpoints.log")).unwrap();
    std::fs::remove_file(dir.join("checkpoint")).unwrap();
    std::fs::remove_file(dir.join("checkpoint.vkey")).unwrap();
    let (forger, _) = NoteSigner::generate("ward.test/cli").unwrap();
    let (mut log, _) = AuditLog::open(&dir, forger, LogOptions::new("ward.test/cli")).unwrap();
    log.checkpoint(SystemTime::now()).unwrap();
    drop(log);

    let text = f.verify_fails(&[]);
    assert!(text.starts_with("trust root: pinned key"), "{text}");
    assert!(text.contains("checkpoint #0"), "{text}");
    let local = f.ok(&["verify", "--trust-local-key"]);
    assert!(local.contains("--trust-local-key: whoever can rewrite the log can replace it"), "{local}");
    // Without a pinned key, a flag or the explicit opt-in, nothing is trusted.
    let bare = tempfile::tempdir().unwrap();
    std::fs::write(
        bare.path().join("ward.toml"),
        CONFIG.replace("dir = \"audit\"", &format!("dir = \"{}\"", dir.display())),
    )
    .unwrap();
    std::fs::write(bare.path().join("audit.key"), [5u8; 32]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["audit", "verify", "--config", bare.path().join("ward.toml").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no trusted checkpoint key"), "{err}");
}

/// Issue 18 review: with several pinned keys each checkpoint is judged by
/// its own signature; nothing in the log directory picks the key.
#[test]
fn every_pinned_key_counts_and_none_is_chosen_by_the_log_directory() {
    let f = Fixture::new(200);
    let (other, _) = NoteSigner::generate("ward.test/cli").unwrap();
    let config = std::fs::read_to_string(f.dir.path().join("ward.toml")).unwrap();
    let both = config.replace("verifier_keys = [\"", &format!("verifier_keys = [\"{}\", \"", other.verifier_key()));
    std::fs::write(f.dir.path().join("ward.toml"), both).unwrap();
    let out = f.ok(&["verify"]);
    assert!(out.contains("2 of 2 checkpoints verified") && out.ends_with("ok\n"), "{out}");
    assert!(out.contains(&other.verifier_key()), "every pinned key is named: {out}");
    // The latest checkpoint file replaced by one signed with a key nobody
    // pinned changes nothing about which keys are trusted.
    let (forger, _) = NoteSigner::generate("ward.test/cli").unwrap();
    let latest = f.log_dir().join("checkpoint");
    let text = std::fs::read_to_string(&latest).unwrap();
    let body = text.split("\n\n").next().unwrap();
    std::fs::write(&latest, forger.sign(&format!("{body}\n")).unwrap()).unwrap();
    assert!(f.ok(&["verify"]).ends_with("ok\n"));
}
