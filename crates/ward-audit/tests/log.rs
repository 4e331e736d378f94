//! The audit log end to end on real files: appends, reopen, proofs,
//! recovery, retention, and every kind of tampering the issue lists.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::SystemTime;

use ward_audit::segments::{self, file_name};
use ward_audit::verify::{Report, verify};
use ward_audit::{AuditLog, LogOptions, LogSink, Retention, SinkOptions, TreeStore, frame};
use ward_merkle::{NodeSource, NoteSigner, NoteVerifier, inclusion_proof, leaf_hash, verify_inclusion};

const SEED: [u8; 32] = [7; 32];

fn signer() -> NoteSigner {
    NoteSigner::from_seed("ward.test/audit", &SEED).unwrap()
}

fn verifier() -> NoteVerifier {
    NoteVerifier::new(&signer().verifier_key()).unwrap()
}

fn record(i: u64) -> Vec<u8> {
    format!(r#"{{"schema":"ward.audit.v2","request_id":"r{i}","decision":"allow","pad":"{}"}}"#, "x".repeat(200))
        .into_bytes()
}

/// A log of `n` records with a checkpoint every `every`, closed.
fn build(dir: &Path, n: u64, every: u64) {
    let (mut log, _) = AuditLog::open(dir, signer(), LogOptions::new("ward.test/audit")).unwrap();
    let mut i = 0;
    while i < n {
        let end = (i + every).min(n);
        let batch: Vec<Vec<u8>> = (i..end).map(record).collect();
        log.append(batch.iter().map(Vec::as_slice)).unwrap();
        log.checkpoint(SystemTime::now()).unwrap();
        i = end;
    }
}

fn check(dir: &Path, saved: Option<&str>) -> Report {
    verify(dir, &verifier(), saved, |_, _| {}).unwrap()
}

fn the_segment(dir: &Path) -> std::path::PathBuf {
    dir.join("segments").join(file_name(0))
}

/// Rewrite the records of the one segment as an attacker would: valid
/// frames with fresh checksums.
fn rewrite(dir: &Path, edit: impl FnOnce(&mut Vec<Vec<u8>>)) {
    let path = the_segment(dir);
    let bytes = std::fs::read(&path).unwrap();
    let frames = segments::scan(&bytes).unwrap().frames;
    let mut records: Vec<Vec<u8>> = frames.iter().map(|(_, f)| f.payload.to_vec()).collect();
    edit(&mut records);
    let mut out = frame::header(0).to_vec();
    for r in &records {
        frame::encode(r, &mut out).unwrap();
    }
    std::fs::write(&path, out).unwrap();
}

#[tokio::test]
async fn appends_are_acknowledged_durable_and_proofs_verify_against_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let options = SinkOptions { checkpoint_every: 1000, commit_records: 500, ..SinkOptions::default() };
    let (sink, _) = LogSink::open(dir.path(), signer(), LogOptions::new("ward.test/audit"), options).unwrap();
    let mut last = 0;
    for i in 0..2500 {
        last = sink.append(record(i)).unwrap();
        assert_eq!(last, i);
    }
    sink.durable(last).await.unwrap();
    assert!(sink.durable_size() > last);
    let cp = sink.checkpoint_now().await.unwrap();
    assert_eq!(cp.checkpoint.size, 2500);
    drop(sink);

    // Reopen: the same root, nothing rehashed.
    let (log, recovery) = AuditLog::open(dir.path(), signer(), LogOptions::new("ward.test/audit")).unwrap();
    assert_eq!(recovery.rehashed, 0);
    assert_eq!(log.size(), 2500);
    assert_eq!(log.root(), cp.checkpoint.root);
    for i in [0, 1, 999, 2499] {
        let proof = inclusion_proof(log.tree(), i, 2500).unwrap();
        verify_inclusion(i, 2500, &leaf_hash(&record(i)), &proof, &cp.checkpoint.root).unwrap();
        assert!(verify_inclusion(i, 2500, &leaf_hash(&record(i + 1)), &proof, &cp.checkpoint.root).is_err());
    }
    drop(log);
    let report = check(dir.path(), Some(&cp.note));
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(
        (report.records, report.checkpoints_ok, report.consistent_with_saved),
        (2500, report.checkpoints, Some(true))
    );
    assert!(report.checkpoints >= 2, "{}", report.checkpoints);
}

#[test]
fn only_one_writer_per_log() {
    let dir = tempfile::tempdir().unwrap();
    let _first = AuditLog::open(dir.path(), signer(), LogOptions::new("o")).unwrap();
    let second = AuditLog::open(dir.path(), signer(), LogOptions::new("o"));
    assert!(matches!(second, Err(ward_audit::LogError::Locked(_))));
}

#[test]
fn a_torn_tail_is_cut_kept_and_reported_and_a_rebuilt_tree_matches() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 100, 100);
    // A crash mid-write: half a frame after the last record.
    let mut partial = Vec::new();
    frame::encode(&record(100), &mut partial).unwrap();
    let mut seg = std::fs::read(the_segment(dir.path())).unwrap();
    let good_len = seg.len();
    seg.extend_from_slice(&partial[..partial.len() / 2]);
    std::fs::write(the_segment(dir.path()), &seg).unwrap();
    // …and a tree cache that lost its upper levels.
    std::fs::remove_file(dir.path().join("tree/level-03")).unwrap();

    let (mut log, recovery) = AuditLog::open(dir.path(), signer(), LogOptions::new("ward.test/audit")).unwrap();
    let torn = recovery.torn.unwrap();
    assert_eq!((torn.index, torn.bytes), (100, (partial.len() / 2) as u64));
    assert_eq!(std::fs::read(&torn.saved_to).unwrap(), &partial[..partial.len() / 2]);
    assert_eq!(std::fs::metadata(the_segment(dir.path())).unwrap().len(), good_len as u64);
    assert_eq!(log.size(), 100);
    log.append([record(100).as_slice()]).unwrap();
    log.checkpoint(SystemTime::now()).unwrap();
    drop(log);
    assert!(check(dir.path(), None).ok());
}

#[test]
fn damage_inside_a_signed_checkpoint_refuses_to_open_instead_of_cutting() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 50, 50);
    let mut seg = std::fs::read(the_segment(dir.path())).unwrap();
    let n = seg.len();
    seg[n - 3] ^= 1;
    std::fs::write(the_segment(dir.path()), &seg).unwrap();
    let err = AuditLog::open(dir.path(), signer(), LogOptions::new("ward.test/audit")).unwrap_err().to_string();
    assert!(err.contains("record 49") && err.contains("ward audit verify"), "{err}");
}

#[test]
fn rotation_and_retention_keep_the_log_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        segment_bytes: 4096,
        retention: Retention { max_age: None, max_bytes: Some(20_000) },
        ..LogOptions::new("ward.test/audit")
    };
    let (mut log, _) = AuditLog::open(dir.path(), signer(), options).unwrap();
    for i in 0..40 {
        let batch: Vec<Vec<u8>> = (i * 10..i * 10 + 10).map(record).collect();
        log.append(batch.iter().map(Vec::as_slice)).unwrap();
        log.checkpoint(SystemTime::now()).unwrap();
        log.apply_retention(SystemTime::now()).unwrap();
    }
    let first_kept = log.apply_retention(SystemTime::now()).unwrap();
    assert!(first_kept > 0, "retention must have removed old segments");
    let total: u64 = segments::list(&dir.path().join("segments")).unwrap().iter().map(|s| s.bytes).sum();
    assert!(total <= 20_000 + 4096 + 3000, "{total}");
    // Proofs still work for removed records: the tree is kept.
    let root = log.root();
    let proof = inclusion_proof(log.tree(), 3, 400).unwrap();
    verify_inclusion(3, 400, &leaf_hash(&record(3)), &proof, &root).unwrap();
    drop(log);
    let report = check(dir.path(), None);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!((report.first_record, report.records), (first_kept, 400));
    // Reopen after retention.
    let (log, _) = AuditLog::open(dir.path(), signer(), LogOptions::new("ward.test/audit")).unwrap();
    assert_eq!(log.size(), 400);
}

// ---- Tampering: every case is detected, naming the first bad index. ----

fn tampered(edit: impl FnOnce(&Path)) -> Report {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 300, 100);
    assert!(check(dir.path(), None).ok());
    edit(dir.path());
    let report = check(dir.path(), None);
    assert!(!report.ok(), "tampering went unnoticed");
    report
}

#[test]
fn a_flipped_byte_is_detected_at_its_record() {
    let report = tampered(|dir| {
        let path = the_segment(dir);
        let mut bytes = std::fs::read(&path).unwrap();
        let frames = segments::scan(&bytes).unwrap().frames;
        let at = frames[137].0 + 40;
        bytes[at] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
    });
    assert_eq!(report.first_bad_index(), Some(137), "{:?}", report.problems);
}

#[test]
fn a_rewritten_record_with_a_fresh_checksum_is_detected_at_its_record() {
    let report = tampered(|dir| rewrite(dir, |r| r[201] = b"{\"decision\":\"deny\"}".to_vec()));
    assert_eq!(report.first_bad_index(), Some(201), "{:?}", report.problems);
    assert!(report.problems.iter().any(|p| p.message.contains("signed checkpoint at size 300")));
}

#[test]
fn a_deleted_record_is_detected_where_it_was() {
    let report = tampered(|dir| rewrite(dir, |r| drop(r.remove(42))));
    assert_eq!(report.first_bad_index(), Some(42), "{:?}", report.problems);
}

#[test]
fn an_inserted_record_is_detected_where_it_went() {
    let report = tampered(|dir| rewrite(dir, |r| r.insert(250, b"{\"forged\":true}".to_vec())));
    assert_eq!(report.first_bad_index(), Some(250), "{:?}", report.problems);
}

#[test]
fn reordered_records_are_detected_at_the_first_moved_one() {
    let report = tampered(|dir| rewrite(dir, |r| r.swap(10, 11)));
    assert_eq!(report.first_bad_index(), Some(10), "{:?}", report.problems);
}

#[test]
fn truncation_is_detected_at_the_first_missing_record() {
    let report = tampered(|dir| rewrite(dir, |r| r.truncate(280)));
    assert_eq!(report.first_bad_index(), Some(280), "{:?}", report.problems);
    assert!(report.problems.iter().any(|p| p.message.contains("truncated")));
}

#[test]
fn a_consistent_rewrite_is_caught_by_a_saved_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 300, 100);
    let saved = std::fs::read_to_string(dir.path().join("checkpoint")).unwrap();

    // The attacker holds the machine and the checkpoint key: rewrites record
    // 120, rebuilds the tree cache, re-signs a fresh checkpoint history.
    rewrite(dir.path(), |r| r[120] = b"{\"decision\":\"allow\",\"forged\":true}".to_vec());
    std::fs::remove_dir_all(dir.path().join("tree")).unwrap();
    std::fs::remove_file(dir.path().join("checkpoints.log")).unwrap();
    std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    let (mut log, _) = AuditLog::open(dir.path(), signer(), LogOptions::new("ward.test/audit")).unwrap();
    log.append([b"{\"after\":1}".as_slice()]).unwrap();
    log.checkpoint(SystemTime::now()).unwrap();
    drop(log);

    let alone = check(dir.path(), None);
    assert!(alone.ok(), "without outside evidence the rewrite is self-consistent: {:?}", alone.problems);
    let report = check(dir.path(), Some(&saved));
    assert_eq!(report.consistent_with_saved, Some(false));
    assert!(report.problems.iter().any(|p| p.message.contains("consistency proof")), "{:?}", report.problems);
}

#[test]
fn a_checkpoint_signed_by_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 10, 10);
    let other = NoteSigner::from_seed("ward.test/audit", &[9; 32]).unwrap();
    let forged = ward_merkle::Checkpoint {
        origin: "ward.test/audit".into(),
        size: 10,
        root: TreeStore::open_read(&dir.path().join("tree"))
            .map(|t| ward_merkle::subtree_root(&t, 0, 10).unwrap())
            .unwrap(),
        extensions: vec![],
    };
    let note = other.sign(&forged.to_text()).unwrap();
    let report = check(dir.path(), Some(&note));
    assert_eq!(report.consistent_with_saved, Some(false));
    assert!(report.problems[0].message.contains("does not verify"));
    let reader = TreeStore::open_read(&dir.path().join("tree")).unwrap();
    assert_eq!(reader.size(), 10);
}

#[test]
fn the_tailer_follows_appends_across_rotations_and_respects_the_limit() {
    use ward_audit::segments::Tailer;
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions { segment_bytes: 4096, ..LogOptions::new("ward.test/audit") };
    let (mut log, _) = AuditLog::open(dir.path(), signer(), options).unwrap();
    let append = |log: &mut AuditLog, from: u64, to: u64| {
        let batch: Vec<Vec<u8>> = (from..to).map(record).collect();
        for chunk in batch.chunks(7) {
            log.append(chunk.iter().map(Vec::as_slice)).unwrap();
        }
    };
    append(&mut log, 0, 50);
    let segments = dir.path().join("segments");
    assert!(segments::list(&segments).unwrap().len() > 2, "rotated");
    let mut t = Tailer::new(&segments, 0);
    let got = t.poll(1000, 30).unwrap();
    assert_eq!(got.iter().map(|r| r.index).collect::<Vec<_>>(), (0..30).collect::<Vec<_>>(), "stops at the limit");
    assert!(got.iter().all(|r| r.payload == record(r.index)));
    let got = t.poll(5, u64::MAX).unwrap();
    assert_eq!(got.first().map(|r| r.index), Some(30));
    assert_eq!(got.len(), 5);
    let rest = t.poll(1000, u64::MAX).unwrap();
    assert_eq!(rest.last().map(|r| r.index), Some(49));
    assert!(t.poll(1000, u64::MAX).unwrap().is_empty());
    append(&mut log, 50, 120);
    let more = t.poll(1000, u64::MAX).unwrap();
    assert_eq!(more.iter().map(|r| r.index).collect::<Vec<_>>(), (50..120).collect::<Vec<_>>());
    // Starting in the middle of a segment.
    let mut mid = Tailer::new(&segments, 77);
    assert_eq!(mid.poll(3, u64::MAX).unwrap().iter().map(|r| r.index).collect::<Vec<_>>(), [77, 78, 79]);
}

#[test]
fn a_tailer_past_the_end_of_the_log_says_so() {
    use ward_audit::segments::Tailer;
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 10, 10);
    let mut t = Tailer::new(&dir.path().join("segments"), 50);
    let err = t.poll(10, u64::MAX).unwrap_err().to_string();
    assert!(err.contains("record 50 is past the end of the log (10 records)"), "{err}");
    let mut at_end = Tailer::new(&dir.path().join("segments"), 10);
    assert!(at_end.poll(10, u64::MAX).unwrap().is_empty(), "the next index to be written is not an error");
}

// ---- Issue 18, item 3 and 7: the tree cache is never trusted, and one
// damaged record is one problem. ----

#[test]
fn an_intact_log_verifies_from_segments_and_checkpoints_alone() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 300, 100);
    // An auditor's copy: segments and checkpoints, no tree cache.
    std::fs::remove_dir_all(dir.path().join("tree")).unwrap();
    let report = check(dir.path(), None);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.checkpoints_ok, report.checkpoints);
    let saved = std::fs::read_to_string(dir.path().join("checkpoint")).unwrap();
    let report = check(dir.path(), Some(&saved));
    assert_eq!(report.consistent_with_saved, Some(true), "{:?}", report.problems);
}

#[test]
fn a_damaged_cache_is_reported_as_the_cache_not_as_a_record() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 300, 100);
    let level0 = dir.path().join("tree").join("level-00");
    let mut bytes = std::fs::read(&level0).unwrap();
    bytes[150 * 32 + 5] ^= 0x01;
    std::fs::write(&level0, bytes).unwrap();
    let report = check(dir.path(), None);
    assert!(!report.ok(), "a damaged cache is still reported");
    assert_eq!(report.first_bad_index(), None, "no record is blamed: {:?}", report.problems);
    assert!(
        report.problems.iter().any(|p| p.message.contains("tree cache is damaged from leaf 150")),
        "{:?}",
        report.problems
    );
    assert_eq!(report.checkpoints_ok, report.checkpoints, "the records match every checkpoint");
}

#[test]
fn one_damaged_record_is_one_problem_not_a_truncation() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 300, 50);
    let path = the_segment(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let at = segments::scan(&bytes).unwrap().frames[60].0 + 40;
    bytes[at] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let report = check(dir.path(), None);
    assert_eq!(report.first_bad_index(), Some(60), "{:?}", report.problems);
    assert!(!report.problems.iter().any(|p| p.message.contains("truncated")), "{:?}", report.problems);
    assert_eq!(
        report.problems.iter().filter(|p| p.message.contains("could not be checked")).count(),
        1,
        "{:?}",
        report.problems
    );
}

/// Issue 18, item 5: a process that crash-loops faster than
/// `checkpoint_interval` still gets its records signed — at the next start,
/// right after recovery, and within a second of its own first records.
#[test]
fn records_left_unsigned_by_a_crash_are_signed_after_recovery_and_soon_after_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _) = AuditLog::open(dir.path(), signer(), LogOptions::new("ward.test/audit")).unwrap();
        let batch: Vec<Vec<u8>> = (0..50).map(record).collect();
        log.append(batch.iter().map(Vec::as_slice)).unwrap();
        // Killed before any checkpoint.
    }
    let options = SinkOptions { checkpoint_interval: std::time::Duration::from_secs(3600), ..SinkOptions::default() };
    let (sink, _) = LogSink::open(dir.path(), signer(), LogOptions::new("ward.test/audit"), options).unwrap();
    let signed = |n: u64| {
        (0..100).any(|_| {
            if sink.latest_checkpoint().is_some_and(|c| c.checkpoint.size == n) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            false
        })
    };
    assert!(signed(50), "the previous run's records are signed at start");
    sink.append(record(50)).unwrap();
    assert!(signed(51), "this run's first record is signed within seconds, not at the 1 h interval");
}
