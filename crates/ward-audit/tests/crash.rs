//! Crash test: a writer process appending as fast as it can is killed with
//! SIGKILL at random moments, 50 times over the same log. After every kill
//! the log must open, verify, and hold every record whose append the writer
//! had seen acknowledged (durable) before it died.
//!
//! The writer is this test binary itself, re-run with `WARD_CRASH_DIR` set
//! (the `writer_process` entry point below); it prints `ack INDEX TASK SEQ`
//! for each acknowledged record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ward_audit::segments::{ReadItem, SegmentReader};
use ward_audit::{AuditLog, LogOptions, LogSink, SinkOptions};
use ward_merkle::{NoteSigner, NoteVerifier};

const KILLS: usize = 50;
const TASKS: u64 = 8;

fn options() -> LogOptions {
    // Small segments: rotation happens under fire too, and reopening scans little.
    LogOptions { segment_bytes: 1 << 20, ..LogOptions::new("ward.test/crash") }
}

fn signer() -> NoteSigner {
    NoteSigner::from_seed("ward.test/crash", &[3; 32]).unwrap()
}

fn payload(task: u64, seq: u64) -> Vec<u8> {
    format!(r#"{{"task":{task},"seq":{seq},"pad":"{}"}}"#, "p".repeat(240)).into_bytes()
}

/// xorshift64*: random kill times without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn sigkill_during_heavy_appending_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let mut acked: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut torn = 0;
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args(["--exact", "writer_process", "--ignored", "--nocapture", "--test-threads=1"])
            .env("WARD_CRASH_DIR", dir.path())
            .env("WARD_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        // Wait until the writer is appending, then kill it 5–150 ms later.
        let started = Instant::now();
        let mut seen_ack = false;
        while !seen_ack && started.elapsed() < Duration::from_secs(20) {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
                seen_ack = line.starts_with("ack ");
                record_ack(&line, &mut acked);
            }
        }
        assert!(seen_ack, "round {round}: the writer never acknowledged a record");
        std::thread::sleep(Duration::from_millis(5 + rng.next() % 145));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        // Only complete lines count: the writer printed them after the ack.
        for line in rx.try_iter() {
            record_ack(&line, &mut acked);
        }

        // The log opens (recovering), verifies, and holds every acked record.
        let t = Instant::now();
        let (log, recovery) = AuditLog::open(dir.path(), signer(), options()).unwrap();
        torn += usize::from(recovery.torn.is_some());
        let size = log.size();
        drop(log);
        let verifier = NoteVerifier::new(&signer().verifier_key()).unwrap();
        let report = ward_audit::verify::verify(dir.path(), &verifier, None, |_, _| {}).unwrap();
        assert!(report.ok(), "round {round}: {:?}", report.problems);
        assert_eq!(report.records, size);
        check_contains(dir.path(), &acked, round);
        eprintln!("round {round}: {size} records, checked in {:?}", t.elapsed());
    }
    eprintln!("{} acknowledged records survived {KILLS} kills ({torn} torn tails cut)", acked.len());
    assert!(acked.len() > KILLS * 100, "the writer was not under load: {}", acked.len());
}

fn record_ack(line: &str, acked: &mut HashMap<u64, (u64, u64)>) {
    let parts: Vec<&str> = line.split(' ').collect();
    if let ["ack", index, task, seq] = parts[..] {
        acked.insert(index.parse().unwrap(), (task.parse().unwrap(), seq.parse().unwrap()));
    }
}

fn check_contains(dir: &Path, acked: &HashMap<u64, (u64, u64)>, round: usize) {
    let mut found = 0;
    for item in SegmentReader::new(&dir.join("segments"), 0).unwrap() {
        let ReadItem::Record(r) = item else { panic!("round {round}: damaged log: {item:?}") };
        if let Some(&(task, seq)) = acked.get(&r.index) {
            assert_eq!(r.payload, payload(task, seq), "round {round}: record {} changed", r.index);
            found += 1;
        }
    }
    assert_eq!(found, acked.len(), "round {round}: acknowledged records are missing");
}

/// The writer process (run only by the test above, through `WARD_CRASH_DIR`).
#[test]
#[ignore = "entry point of the crash test's writer process"]
fn writer_process() {
    let Some(dir) = std::env::var_os("WARD_CRASH_DIR") else { return };
    let round: u64 = std::env::var("WARD_CRASH_ROUND").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let options = SinkOptions {
            checkpoint_every: 5_000,
            checkpoint_interval: Duration::from_millis(20),
            ..SinkOptions::default()
        };
        let (sink, _) = LogSink::open(Path::new(&dir), signer(), self::options(), options).unwrap();
        let sink = std::sync::Arc::new(sink);
        let (out, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
        for task in 0..TASKS {
            let (sink, out) = (sink.clone(), out.clone());
            tokio::spawn(async move {
                // Many appends in flight per task: heavy, batched load.
                let mut seq = round << 32;
                loop {
                    let mut pending = Vec::with_capacity(64);
                    for _ in 0..64 {
                        let index = sink.append(payload(task, seq)).unwrap();
                        pending.push((sink.durable(index), index, seq));
                        seq += 1;
                    }
                    for (ack, index, seq) in pending {
                        ack.await.unwrap();
                        let _ = out.send(format!("ack {index} {task} {seq}"));
                    }
                }
            });
        }
        drop(out);
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        while let Some(line) = lines.recv().await {
            writeln!(stdout, "{line}").unwrap();
        }
    });
}
