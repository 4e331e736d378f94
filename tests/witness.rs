//! Witness cosignatures (C2SP tlog-cosignature/v1) against a verifier and a
//! signer written from the specification in Python (`tests/witness/`),
//! sharing no code with Ward: what Ward's cosigners write, anyone's
//! verifier reads, and the reverse.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

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

/// The control plane as a witness over HTTP (`POST /witness/add-checkpoint`):
/// a cosignature for a consistent checkpoint, `409 text/x.tlog.size` with
/// the size it holds for a stale old size, 403/404/422 otherwise, each
/// audited.
#[tokio::test(flavor = "multi_thread")]
async fn the_control_plane_serves_add_checkpoint() {
    use std::sync::Arc;
    use ward_merkle::{Checkpoint, MemoryTree, consistency_proof};
    let dir = tempfile::tempdir().unwrap();
    let pki = ward_pki::generate_local_pki("witness test", &["localhost"]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://localhost:{}", listener.local_addr().unwrap().port());
    let log = NoteSigner::from_seed("ward.test/audit", &[3; 32]).unwrap();
    let logs = std::collections::HashMap::from([(
        "ward.test/audit".to_owned(),
        vec![NoteVerifier::new(&log.verifier_key()).unwrap()],
    )]);
    let cosigner = Cosigner::from_seed("witness.test/control", &[5; 32]).unwrap();
    let witness = ward_audit::witness::Witness::open(&dir.path().join("witness.json"), cosigner, logs).unwrap();
    let vkey = witness.verifier_key();
    let cp = ward_control::ControlPlane::open(
        ward_control::Store::open(&dir.path().join("control.redb")).unwrap(),
        ward_control::ControlSettings::new(&base),
    )
    .unwrap()
    .with_witness(Arc::new(witness));
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let cp = Arc::new(cp);
    tokio::spawn(ward_control::serve(
        listener,
        common::server_tls(&pki),
        ward_control::router(Arc::clone(&cp)),
        stopped,
    ));
    let client = common::client(&pki.ca.cert_pem);

    let mut tree = MemoryTree::new();
    for i in 0..40u64 {
        tree.push(format!("r-{i}").as_bytes());
    }
    let note_at = |size: u64| {
        let mut t = MemoryTree::new();
        for i in 0..size {
            t.push(format!("r-{i}").as_bytes());
        }
        log.sign(&Checkpoint { origin: "ward.test/audit".into(), size, root: t.root(), extensions: vec![] }.to_text())
            .unwrap()
    };
    let post = |body: String| {
        let (client, url) = (client.clone(), format!("{base}/witness/add-checkpoint"));
        async move { client.post(url).body(body).send().await.unwrap() }
    };
    let first = ward_audit::witness::AddCheckpoint { old: 0, proof: vec![], note: note_at(20) };
    let r = post(first.body()).await;
    assert_eq!(r.status(), 200);
    let line = r.text().await.unwrap();
    let verifier = CosignatureVerifier::new(&vkey).unwrap();
    assert!(verifier.verify(&format!("{}{line}", note_at(20))).is_ok(), "{line}");
    // A stale old size: 409 with the size held, as text/x.tlog.size.
    let again = ward_audit::witness::AddCheckpoint { old: 20, proof: vec![], note: note_at(20) };
    assert_eq!(post(again.body()).await.status(), 200, "the same checkpoint again is cosigned again");
    assert_eq!(post(first.body()).await.status(), 409, "old 0 once the witness holds 20");
    let stale = ward_audit::witness::AddCheckpoint { old: 0, proof: vec![], note: note_at(30) };
    let r = post(stale.body()).await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()["content-type"], "text/x.tlog.size");
    assert_eq!(r.text().await.unwrap(), "20\n");
    // Consistent growth, then a proof that does not verify.
    let grow = ward_audit::witness::AddCheckpoint {
        old: 20,
        proof: consistency_proof(&tree, 20, 40).unwrap(),
        note: note_at(40),
    };
    assert_eq!(post(grow.body()).await.status(), 200);
    let bad = ward_audit::witness::AddCheckpoint {
        old: 40,
        proof: vec![],
        note: note_at(40).replace("ward.test", "other.test"),
    };
    assert!(matches!(post(bad.body()).await.status().as_u16(), 400 | 403 | 404));
    assert_eq!(cp.witness_seen("ward.test/audit"), Some(40));
}

/// `ward up`: the control plane witnesses the gateway's log in process,
/// `ward audit verify` requires its cosignature, and a log cut back after
/// it was cosigned fails verification with nothing kept by hand.
#[test]
fn ward_up_gets_its_log_witnessed_and_verify_requires_it() {
    let dir = tempfile::tempdir().unwrap();
    let up = common::WardUp::start(dir.path());
    let data = dir.path().join("ward-data");
    let cosigned = data.join("audit").join("cosigned");
    for _ in 0..100 {
        if cosigned.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    up.stop();
    let note = std::fs::read_to_string(&cosigned).expect("the witness cosigned a checkpoint");
    let verify = |extra: &[&str]| {
        let mut args = vec!["audit", "verify", "--data-dir", "ward-data"];
        args.extend_from_slice(extra);
        common::ward_cli(dir.path(), &args)
    };
    let out = verify(&[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("witnesses: 1 of 1 cosigned"), "{text}");
    let status = common::ward_cli(dir.path(), &["audit", "status", "--data-dir", "ward-data"]);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.contains("latest checkpoint: size")
            && status.contains("witness ward.local/witness (")
            && status.contains("cosigned size"),
        "{status}"
    );
    assert!(status.contains("pending:"), "{status}");
    assert!(text.contains("consistent with the witnessed checkpoint"), "{text}");

    // The tail cut after the cosignature, with the checkpoints that covered
    // it: the records and the remaining checkpoints agree, but the witnessed
    // checkpoint is past the end of the log.
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    assert!(size > 1);
    let audit = data.join("audit");
    let segments = audit.join("segments");
    let seg = std::fs::read_dir(&segments).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let frames = ward_audit::segments::scan(&bytes).unwrap().frames;
    // Cut inside what the witness cosigned: records size-1 and on go.
    let cut = usize::try_from(size - 1).unwrap();
    std::fs::write(&seg, &bytes[..frames[cut].0]).unwrap();
    std::fs::remove_dir_all(audit.join("tree")).unwrap();
    std::fs::remove_file(audit.join("checkpoints.log")).unwrap();
    std::fs::remove_file(audit.join("checkpoint")).unwrap();
    let out = verify(&[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "a truncated log passed: {text}");
    assert!(text.contains("truncated: the checkpoint the witnesses cosigned"), "{text}");
    // And without the cosigned file, nothing is anchored: refused too.
    std::fs::remove_file(&cosigned).unwrap();
    std::fs::remove_dir_all(audit.join("cosignatures")).unwrap();
    let out = verify(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no checkpoint of this log was cosigned"));
}

/// The `[audit] <key> = [..]` / `verifier_keys = [..]` value of a `ward up` config.
fn config_list(config: &str, key: &str) -> String {
    let line = config.lines().find(|l| l.starts_with(&format!("{key} = [\""))).unwrap();
    line.split('"').nth(1).unwrap().to_owned()
}

/// Some records in the log of the `ward up` whose gateway is `gateway` (refused requests).
fn traffic(gateway: &str) {
    for _ in 0..5 {
        let out = std::process::Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", &format!("{gateway}/api/hello")])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    }
}

/// Cosignature lines (`— name keyhash-and-sig`) in a cosigned note.
fn cosignature_lines(note: &str) -> usize {
    note.lines().filter(|l| l.starts_with('\u{2014}')).count().saturating_sub(1)
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..300 {
        if ready() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn cosigned_size(data: &Path, lines: usize) -> Option<u64> {
    let note = std::fs::read_to_string(data.join("audit/cosigned")).ok()?;
    (cosignature_lines(&note) >= lines).then(|| note.lines().nth(1)?.parse().ok()).flatten()
}

fn latest_size(data: &Path) -> u64 {
    let note = std::fs::read_to_string(data.join("audit/checkpoint")).unwrap();
    note.lines().nth(1).unwrap().parse().unwrap()
}

/// A witness on another host, over HTTPS (`[[audit.witnesses]]`): it
/// cosigns the log's checkpoints beside the local witness; while it is down
/// the log keeps serving and `ward audit status` shows what waits; back on
/// (its state kept) it cosigns the latest checkpoint. Then a fork — a copy
/// of the log taken earlier, run on — is presented to the same witness: it
/// refuses (the fork raises a CRITICAL alert) and `ward audit verify` with
/// the pinned keys rejects the fork, while the real log verifies.
#[test]
fn a_remote_witness_cosigns_over_https_survives_downtime_and_catches_a_fork() {
    let (w_dir, l_dir, fork_dir) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (w_data, l_data) = (w_dir.path().join("ward-data"), l_dir.path().join("ward-data"));
    // Both initialised once; the log then gets an origin of its own (a fresh log).
    common::WardUp::start(w_dir.path()).stop();
    common::WardUp::start(l_dir.path()).stop();
    let l_config = std::fs::read_to_string(l_data.join("ward.toml")).unwrap();
    let l_vkey = config_list(&l_config, "verifier_keys");
    std::fs::remove_dir_all(l_data.join("audit")).unwrap();
    std::fs::remove_dir_all(l_data.join("witness")).unwrap();
    let w_config = std::fs::read_to_string(w_data.join("ward.toml")).unwrap();
    let w_key = config_list(&w_config, "witness_keys");
    std::fs::write(
        w_data.join("ward.toml"),
        format!("{w_config}\n[[witness.logs]]\norigin = \"l.example/audit\"\nverifier_keys = [\"{l_vkey}\"]\n"),
    )
    .unwrap();
    let witness = common::WardUp::start(w_dir.path());
    let w_url = witness.control_url();
    let w_port = w_url.rsplit(':').next().unwrap().to_owned();
    let l_config = l_config
        .replace("\"ward.local/audit\"", "\"l.example/audit\"")
        .replace("checkpoint_interval = \"10s\"\n", "checkpoint_interval = \"1s\"\n");
    assert!(l_config.contains("checkpoint_interval = \"1s\"\n"));
    std::fs::write(
        l_data.join("ward.toml"),
        format!(
            "{l_config}\n[[audit.witnesses]]\nurl = \"{w_url}/witness\"\nkey = \"{w_key}\"\nca_file = \"{}\"\n",
            w_data.join("ca.crt").display()
        ),
    )
    .unwrap();

    // Both witnesses cosign.
    let log = common::WardUp::start(l_dir.path());
    let gateway = log.line("gateway ").split_whitespace().nth(1).unwrap().to_owned();
    traffic(&gateway);
    wait_for("two cosignatures", || cosigned_size(&l_data, 2).is_some());
    let verify = |dir: &Path, extra: &[&str]| {
        let mut args = vec!["audit", "verify", "--data-dir", "ward-data"];
        args.extend_from_slice(extra);
        let out = common::ward_cli(dir, &args);
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, text) = verify(l_dir.path(), &["--accept-pending"]);
    assert!(ok && text.contains("witnesses: 2 of 2 cosigned"), "{text}");

    // The witness goes down: the log keeps answering and signing; what waits shows.
    witness.stop();
    let before = cosigned_size(&l_data, 2).unwrap();
    traffic(&gateway);
    wait_for("a checkpoint the remote witness has not seen", || latest_size(&l_data) > before);
    let status = common::ward_cli(l_dir.path(), &["audit", "status", "--data-dir", "ward-data"]);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.lines().any(|l| l.starts_with("witness ") && l.contains("pending:") && !l.contains("pending: 0 ")),
        "{status}"
    );
    let (ok, text) = verify(l_dir.path(), &[]);
    assert!(!ok && text.contains("is not cosigned"), "a checkpoint the remote witness never saw passed: {text}");

    // Back on the same port, with its state: the latest checkpoint gets both.
    let witness = common::WardUp::start_on(w_dir.path(), &format!("127.0.0.1:{w_port}"));
    wait_for("the remote witness's cosignature after its restart", || {
        cosigned_size(&l_data, 2).is_some_and(|s| s > before)
    });
    let state = std::fs::read_to_string(w_data.join("witness/state.json")).unwrap();
    assert!(state.contains("l.example/audit"), "{state}");
    log.stop();
    // At rest, the final checkpoint carries both: verify needs no leniency.
    let (ok, text) = verify(l_dir.path(), &[]);
    assert!(ok && text.contains("witnesses: 2 of 2"), "{text}");

    // The fork: a copy of the log now, then the real log runs on (and is cosigned)…
    let copy = std::process::Command::new("cp")
        .args(["-a", l_data.to_str().unwrap(), fork_dir.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copy.success());
    let fork_data = fork_dir.path().join("ward-data");
    let log = common::WardUp::start(l_dir.path());
    traffic(log.line("gateway ").split_whitespace().nth(1).unwrap());
    let real = latest_size(&l_data);
    wait_for("the real log cosigned past the fork point", || cosigned_size(&l_data, 2).is_some_and(|s| s >= real));
    log.stop();
    // …and the copy runs on with other records, signed with the real key.
    let fork = common::WardUp::start(fork_dir.path());
    traffic(fork.line("gateway ").split_whitespace().nth(1).unwrap());
    std::thread::sleep(std::time::Duration::from_secs(3));
    fork.stop();
    witness.stop();
    let (ok, text) = verify(fork_dir.path(), &[]);
    assert!(!ok, "the fork passed verification: {text}");
    assert!(text.contains("is not cosigned"), "{text}");
    let alerts =
        common::ward_cli(fork_dir.path(), &["audit", "query", "--data-dir", "ward-data", "--event", "detection"]);
    let alerts = String::from_utf8_lossy(&alerts.stdout).into_owned();
    assert!(alerts.contains("ward/witness-divergence") && alerts.contains("critical"), "{alerts}");
    // The real log still verifies with the same pinned keys.
    let (ok, text) = verify(l_dir.path(), &[]);
    assert!(ok, "{text}");
    assert!(fork_data.join("audit/cosigned").exists());
}
