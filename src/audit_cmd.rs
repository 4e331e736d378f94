//! `ward audit …`: read, prove and verify the tamper-evident audit log.
//!
//! Every command reads the log's files directly and never takes its write
//! lock, so it works beside a running gateway. Proofs are anchored in the
//! latest signed checkpoint unless a size is given.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use ward_audit::checkpoints::{LATEST, SignedCheckpoint, VERIFIER_KEY};
use ward_audit::segments::{ReadItem, SegmentReader};
use ward_audit::{TreeStore, proofs, verify};
use ward_merkle::{Hash, NodeSource, NoteSigner, NoteVerifier};

use crate::write_stdout;

/// Where a log lives and the keys that go with it.
pub struct LogLocation {
    /// The log directory.
    pub dir: PathBuf,
    /// The key personal data is hashed with.
    pub hmac_key_file: PathBuf,
    /// The checkpoint verifier keys pinned in the configuration.
    pub verifier_keys: Vec<String>,
    /// The witnesses' cosignature keys `verify` requires (`[audit] witness_keys`).
    pub witness_keys: Vec<String>,
}

impl LogLocation {
    /// From a configuration file.
    pub fn from_config(path: &Path) -> Result<Self, String> {
        let config = ward_config::load(path).map_err(|e| e.to_string())?;
        Ok(Self {
            dir: config.audit.dir,
            hmac_key_file: config.audit.hmac_key_file,
            verifier_keys: config.audit.verifier_keys,
            witness_keys: config.audit.witness_keys,
        })
    }
}

/// What `verify` and `verify-proof` may trust: a key given on the command
/// line, the keys pinned in the configuration, or — only when the operator
/// says so — the log directory's own `checkpoint.vkey`, which whoever
/// rewrites the log can replace along with the checkpoints.
#[derive(Debug, Default)]
pub struct Trust<'a> {
    /// `--vkey`: a key, or a file holding one.
    pub vkey: Option<&'a str>,
    /// `[audit] verifier_keys`.
    pub pinned: &'a [String],
    /// `--trust-local-key`.
    pub trust_local_key: bool,
    /// Witness cosignature keys (`--witness-key`, `[audit] witness_keys`):
    /// the log must carry a checkpoint cosigned by `quorum` of them.
    pub witness_keys: &'a [String],
    /// How many of `witness_keys` must have cosigned (default: all).
    pub quorum: Option<usize>,
    /// `--accept-pending`: signed checkpoints after the cosigned one pass on
    /// the log key alone (by default the latest signed checkpoint must be
    /// the cosigned one: a fork after it is what witnesses exist to catch).
    pub accept_pending: bool,
}

impl Trust<'_> {
    /// The verifiers to use, and a line saying where they came from:
    /// `--vkey`, else the local key when explicitly asked, else every pinned
    /// key (a checkpoint passes with any of them).
    fn resolve(&self, dir: &Path) -> Result<(Vec<NoteVerifier>, String), String> {
        if let Some(v) = self.vkey {
            let verifier = verifier_for(dir, Some(v))?;
            let line = format!("trust root: --vkey {}\n", verifier.key());
            return Ok((vec![verifier], line));
        }
        if self.trust_local_key {
            let verifier = verifier_for(dir, None)?;
            let line = format!(
                "trust root: the log directory's own checkpoint.vkey {} (--trust-local-key: whoever can rewrite the log can replace it)\n",
                verifier.key()
            );
            return Ok((vec![verifier], line));
        }
        if !self.pinned.is_empty() {
            // Every pinned key counts, each checkpoint by its own signature:
            // nothing in the log directory chooses among them.
            let verifiers = self
                .pinned
                .iter()
                .map(|k| NoteVerifier::new(k).map_err(|e| format!("[audit] verifier_keys: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let keys: Vec<String> = verifiers.iter().map(NoteVerifier::key).collect();
            let line = format!("trust root: pinned key(s) {} ([audit] verifier_keys)\n", keys.join(", "));
            return Ok((verifiers, line));
        }
        Err("no trusted checkpoint key: pin the log's verifier key in [audit] verifier_keys (copy it from \
             checkpoint.vkey when the log is created) or pass --vkey KEY; --trust-local-key uses the \
             log directory's own checkpoint.vkey, which an attacker who rewrites the log replaces too"
            .into())
    }
}

fn verifier_for(dir: &Path, vkey: Option<&str>) -> Result<NoteVerifier, String> {
    let text = match vkey {
        Some(v) if v.contains('+') && !Path::new(v).exists() => v.to_owned(),
        Some(v) => std::fs::read_to_string(v).map_err(|e| format!("{v}: {e}"))?,
        None => {
            let path = dir.join(VERIFIER_KEY);
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e} (pass --vkey)", path.display()))?
        }
    };
    NoteVerifier::new(text.trim()).map_err(|e| format!("verifier key: {e}"))
}

fn latest(dir: &Path, verifier: &NoteVerifier) -> Result<SignedCheckpoint, String> {
    let path = dir.join(LATEST);
    let note = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e} (no checkpoint published yet?)", path.display()))?;
    SignedCheckpoint::verify(&note, verifier).map_err(|e| format!("{}: {e}", path.display()))
}

fn tree(dir: &Path) -> Result<TreeStore, String> {
    let path = dir.join("tree");
    TreeStore::open_read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

fn b64(h: &Hash) -> String {
    STANDARD.encode(h.as_bytes())
}

/// `ward audit checkpoint`: the latest signed checkpoint, after checking it.
pub fn checkpoint(loc: &LogLocation) -> Result<(), String> {
    let c = latest(&loc.dir, &verifier_for(&loc.dir, None)?)?;
    write_stdout(&c.note);
    Ok(())
}

/// A witness key's ID (8 hex digits): witnesses may share a name.
fn key_id(v: &ward_merkle::CosignatureVerifier) -> String {
    v.key().rsplit('+').nth(1).unwrap_or_default().to_owned()
}

/// A cosignature's time (seconds since the epoch), as RFC 3339.
fn when(t: u64) -> String {
    std::time::UNIX_EPOCH
        .checked_add(Duration::from_secs(t))
        .map_or_else(|| "?".to_owned(), ward_audit::format_rfc3339_millis)
}

/// `ward audit status`: how many records the log holds, its latest signed
/// checkpoint, and what the witnesses (`[audit] witness_keys`) cosigned —
/// the records after that are pending cosignatures.
pub fn status(loc: &LogLocation) -> Result<(), String> {
    let verifier = verifier_for(&loc.dir, None)?;
    let records = tree(&loc.dir).map(|t| t.size()).unwrap_or(0);
    let mut out = format!("records: {records}\n");
    let latest = latest(&loc.dir, &verifier).ok();
    match &latest {
        Some(c) => out.push_str(&format!("latest checkpoint: size {} ({})\n", c.checkpoint.size, c.checkpoint.origin)),
        None => out.push_str("latest checkpoint: none yet\n"),
    }
    if loc.witness_keys.is_empty() {
        out.push_str("witnesses: none configured ([audit] witness_keys)\n");
    } else {
        for key in &loc.witness_keys {
            let v =
                ward_merkle::CosignatureVerifier::new(key.trim()).map_err(|e| format!("witness key `{key}`: {e}"))?;
            match ward_audit::witness_client::cosigned_by(&loc.dir, &v) {
                Some((_, size, t)) => {
                    let pending = latest.as_ref().map_or(0, |c| c.checkpoint.size.saturating_sub(size));
                    out.push_str(&format!(
                        "witness {} ({}): cosigned size {size} at {}; pending: {pending} record(s) of signed checkpoints\n",
                        v.name(),
                        key_id(&v),
                        when(t)
                    ));
                }
                None => out.push_str(&format!(
                    "witness {} ({}): nothing cosigned yet; pending: everything\n",
                    v.name(),
                    key_id(&v)
                )),
            }
        }
    }
    write_stdout(&out);
    Ok(())
}

/// The stored tree, the latest checkpoint (when one verifies), and the tree
/// size to prove at: `size`, or the checkpoint's.
fn anchored(
    loc: &LogLocation,
    size: Option<u64>,
    flag: &str,
) -> Result<(TreeStore, Option<SignedCheckpoint>, u64), String> {
    let verifier = verifier_for(&loc.dir, None)?;
    let latest = latest(&loc.dir, &verifier).ok();
    let size = size.or(latest.as_ref().map(|c| c.checkpoint.size)).ok_or(format!("no checkpoint yet: pass {flag}"))?;
    // At an older size, the signed checkpoint of that size (if the history
    // has one) anchors the proof.
    let anchor = match latest {
        Some(c) if c.checkpoint.size == size => Some(c),
        _ => ward_audit::checkpoints::at_size(&loc.dir, &verifier, size),
    };
    Ok((tree(&loc.dir)?, anchor, size))
}

/// `ward audit prove --index I [--size N]`: the proof, and the record itself
/// while retention keeps it.
pub fn prove(loc: &LogLocation, index: u64, size: Option<u64>) -> Result<(), String> {
    let (tree, anchor, size) = anchored(loc, size, "--size")?;
    let mut doc = proofs::inclusion(&tree, index, size, anchor.as_ref())?;
    let leaf = tree.node(0, index);
    doc["record"] = SegmentReader::new(&loc.dir.join("segments"), index)
        .map_err(|e| e.to_string())?
        .find_map(|item| match item {
            ReadItem::Record(r) if r.index == index => Some(r),
            _ => None,
        })
        .filter(|r| Some(r.leaf) == leaf)
        .and_then(|r| String::from_utf8(r.payload).ok())
        .map_or(Value::Null, Value::String);
    write_stdout(&format!("{}\n", serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?));
    Ok(())
}

/// `ward audit consistency --from M --to N`.
pub fn consistency(loc: &LogLocation, from: u64, to: Option<u64>) -> Result<(), String> {
    let (tree, anchor, to) = anchored(loc, to, "--to")?;
    let doc = proofs::consistency(&tree, from, to, anchor.as_ref())?;
    write_stdout(&format!("{}\n", serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?));
    Ok(())
}

/// `ward audit verify-proof [FILE]`: check a proof from `prove` or
/// `consistency` (or the admin API). The root is trusted only through the
/// signed checkpoint in it; `--from-checkpoint` supplies the older signed
/// checkpoint a consistency proof must start from.
pub fn verify_proof(dir: &Path, input: Option<&Path>, trust: &Trust<'_>, old: Option<&Path>) -> Result<String, String> {
    let text = match input {
        Some(p) if p != Path::new("-") => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        _ => std::io::read_to_string(std::io::stdin()).map_err(|e| format!("stdin: {e}"))?,
    };
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("not a proof: {e}"))?;
    let (verifiers, root) = trust.resolve(dir)?;
    // The document's own checkpoint picks nothing: each pinned key is tried.
    let mut last = String::from("no verifier key");
    for verifier in &verifiers {
        let older = match old {
            Some(p) => {
                let note = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                match SignedCheckpoint::verify(&note, verifier) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        last = format!("{}: {e}", p.display());
                        continue;
                    }
                }
            }
            None => None,
        };
        match proofs::check(&doc, verifier, older.as_ref()) {
            Ok(out) => return Ok(format!("{root}{out}")),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `ward audit verify [--from-checkpoint FILE]`. Returns the report text and
/// whether the log verified.
pub fn verify_log(dir: &Path, saved: Option<&Path>, trust: &Trust<'_>) -> Result<(String, bool), String> {
    let (verifiers, root) = trust.resolve(dir)?;
    let saved = saved.map(|p| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))).transpose()?;
    let witnessed = witnessed(dir, trust)?;
    let mut witness_line = witnessed.as_ref().map(|w| w.line.clone()).unwrap_or_default();
    let mut anchors: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = &saved {
        anchors.push(("the saved checkpoint", s));
    }
    for note in witnessed.iter().flat_map(|w| &w.notes) {
        anchors.push(("the checkpoint the witnesses cosigned", note));
    }
    // Hidden when stderr is not a terminal (indicatif's default).
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} verifying {pos}/{len} records [{bar:40}] {per_sec} {eta}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let report = verify::verify_anchored(dir, &verifiers, &anchors, |done, total| {
        bar.set_length(total.max(done));
        bar.set_position(done);
    })
    .map_err(|e| format!("{}: {e}", dir.display()))?;
    bar.finish_and_clear();
    let mut out = root;
    if report.first_record > 0 {
        out.push_str(&format!(
            "records 0..{} were removed by retention: checked through the tree and checkpoints only\n",
            report.first_record
        ));
    }
    out.push_str(&format!(
        "checked records {}..{}; {} of {} checkpoints verified",
        report.first_record, report.records, report.checkpoints_ok, report.checkpoints
    ));
    if let Some(root) = &report.root {
        out.push_str(&format!("; root {}", b64(root)));
    }
    out.push('\n');
    let mut unwitnessed = None;
    if let Some(size) = witnessed.as_ref().map(|w| w.size)
        && report.records > size
    {
        // What a witness has not seen yet is only as good as the local key.
        witness_line.push_str(&format!(
            "  {} record(s) after the witnessed size are not yet cosigned\n",
            report.records - size
        ));
        if let Some(latest) = report.latest_signed.filter(|&l| l > size) {
            unwitnessed = Some((size, latest));
        }
    }
    out.push_str(&witness_line);
    let mut refused = false;
    if let Some((size, latest)) = unwitnessed {
        if trust.accept_pending {
            out.push_str(&format!(
                "  accepted on the log key alone (--accept-pending): signed checkpoints {size}..{latest}\n"
            ));
        } else {
            // A fork signed with the real key after the witnessed size, which
            // no witness would cosign, looks exactly like this.
            out.push_str(&format!(
                "FAIL: the latest signed checkpoint (size {latest}) is not cosigned: only size {size} is; a log forked or rewritten after it would look the same (`ward audit status` shows pending cosignatures; wait for the witnesses, or pass --accept-pending to rest records {size}..{latest} on the log key alone)\n"
            ));
            refused = true;
        }
    }
    let what = match (saved.is_some(), witnessed.is_some()) {
        (true, true) => "the saved and the witnessed checkpoints",
        (false, true) => "the witnessed checkpoint",
        _ => "the saved checkpoint",
    };
    match report.consistent_with_saved {
        Some(true) => out.push_str(&format!("consistent with {what}\n")),
        Some(false) => out.push_str(&format!("NOT consistent with {what}\n")),
        None => {}
    }
    for p in &report.problems {
        out.push_str(&format!("FAIL: {}\n", p.message));
    }
    if let Some(i) = report.first_bad_index() {
        out.push_str(&format!("first bad record: {i}\n"));
    }
    let ok = report.ok() && !refused;
    out.push_str(if ok { "ok\n" } else { "the audit log FAILED verification\n" });
    Ok((out, ok))
}

/// What the witnesses cosigned.
struct Witnessed {
    /// Each cosigning witness's latest cosigned checkpoint (all must be
    /// consistent with the log).
    notes: Vec<String>,
    /// The size a quorum of witnesses has cosigned (a witness that cosigned
    /// a larger consistent checkpoint vouches for every smaller one).
    size: u64,
    /// The report line.
    line: String,
}

/// The checkpoints the configured witnesses cosigned (per witness, its
/// latest: `audit/cosignatures/`, `audit/cosigned`), when witness keys are
/// given.
///
/// # Errors
/// A bad witness key, no cosigned checkpoint, or fewer cosigning witnesses
/// than the quorum: the log is not anchored as required, whatever its
/// records say.
fn witnessed(dir: &Path, trust: &Trust<'_>) -> Result<Option<Witnessed>, String> {
    if trust.witness_keys.is_empty() {
        return Ok(None);
    }
    let verifiers = trust
        .witness_keys
        .iter()
        .map(|k| ward_merkle::CosignatureVerifier::new(k.trim()).map_err(|e| format!("witness key `{k}`: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    // One witness counts once, however many names it is listed under.
    let mut seen_keys = std::collections::HashSet::new();
    let verifiers: Vec<_> = verifiers
        .into_iter()
        .filter(|v| seen_keys.insert(v.key().rsplit('+').next().unwrap_or_default().to_owned()))
        .collect();
    let quorum = trust.quorum.unwrap_or(verifiers.len());
    if quorum == 0 || quorum > verifiers.len() {
        return Err(format!("--quorum must be between 1 and the {} distinct witness keys given", verifiers.len()));
    }
    let mut found: Vec<(String, u64, u64, String)> = verifiers
        .iter()
        .filter_map(|v| {
            ward_audit::witness_client::cosigned_by(dir, v).map(|(note, size, t)| {
                (note, size, t, format!("{} ({}) size {size} at {}", v.name(), key_id(v), when(t)))
            })
        })
        .collect();
    if found.is_empty() {
        return Err(format!(
            "{}: no checkpoint of this log was cosigned by a witness",
            dir.join(ward_audit::witness_client::COSIGNATURES).display()
        ));
    }
    if found.len() < quorum {
        return Err(format!(
            "{} of the {quorum} witnesses required cosigned a checkpoint of this log ({})",
            found.len(),
            found.iter().map(|f| f.3.as_str()).collect::<Vec<_>>().join("; ")
        ));
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.1));
    let size = found.get(quorum - 1).map_or(0, |f| f.1);
    let line = format!(
        "witnesses: {} of {} cosigned; size {size} carries the quorum of {quorum} ({})\n",
        found.len(),
        verifiers.len(),
        found.iter().map(|f| f.3.as_str()).collect::<Vec<_>>().join("; ")
    );
    let mut notes: Vec<String> = Vec::new();
    for (note, ..) in found {
        if !notes.contains(&note) {
            notes.push(note);
        }
    }
    Ok(Some(Witnessed { notes, size, line }))
}

/// `ward audit hash VALUE`: the tag a value is stored as.
pub fn hash(loc: &LogLocation, value: &str) -> Result<(), String> {
    let key = std::fs::read(&loc.hmac_key_file).map_err(|e| format!("{}: {e}", loc.hmac_key_file.display()))?;
    let hasher = ward_crypto::KeyedHasher::new(&ward_crypto::SecretBytes::new(key))
        .map_err(|e| format!("{}: {e}", loc.hmac_key_file.display()))?;
    write_stdout(&format!("{}\n", hasher.tag_hex(value.as_bytes())));
    Ok(())
}

/// Filters for `query`.
#[derive(Debug, Default)]
pub struct Filter {
    /// `time >= since` (RFC 3339 prefix).
    pub since: Option<String>,
    /// `time < until`.
    pub until: Option<String>,
    /// `principal_hmac` equals.
    pub principal_hash: Option<String>,
    /// `decision` equals.
    pub decision: Option<String>,
    /// `event` equals.
    pub event: Option<String>,
}

/// Every `event` an audit record can carry.
pub const EVENTS: &[&str] = &[
    "request",
    "policy_change",
    "key_change",
    "startup",
    "shutdown",
    "token",
    "login",
    "admin",
    "registry",
    "detection",
    "connection",
    "witness",
];

/// Whether `v` is an RFC 3339 time or a prefix of one at day precision or
/// finer (`2026-12-04`, `2026-12-04T10`, `2026-12-04T10:15:00Z`).
fn is_time_prefix(v: &str) -> bool {
    let b = v.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    b.len() >= 10
        && digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10..).is_none_or(|rest| {
            rest.is_empty()
                || (rest.first() == Some(&b'T') && rest.iter().all(|c| c.is_ascii_digit() || b"T:.Z+-".contains(c)))
        })
}

impl Filter {
    /// Refuse values that could never match: a filter that silently matches
    /// nothing reads as "no such records" (`--decision DENY`, `--since
    /// yesterday`).
    ///
    /// # Errors
    /// The option and what it accepts.
    pub fn check(&self) -> Result<(), String> {
        if let Some(d) = self.decision.as_deref().filter(|d| !matches!(*d, "allow" | "deny")) {
            return Err(format!("--decision `{d}`: allow or deny"));
        }
        if let Some(e) = self.event.as_deref().filter(|e| !EVENTS.contains(e)) {
            return Err(format!("--event `{e}`: one of {}", EVENTS.join(", ")));
        }
        for (flag, v) in [("--since", &self.since), ("--until", &self.until)] {
            if let Some(v) = v.as_deref().filter(|v| !is_time_prefix(v)) {
                return Err(format!(
                    "{flag} `{v}`: an RFC 3339 time or a prefix of one, e.g. 2026-12-04 or 2026-12-04T10:00:00Z"
                ));
            }
        }
        if let Some(h) =
            self.principal_hash.as_deref().filter(|h| h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!("--principal-hash `{h}`: the hex tag `ward audit hash` prints"));
        }
        Ok(())
    }

    fn matches(&self, r: &Value) -> bool {
        let time = r["time"].as_str().unwrap_or("");
        self.since.as_deref().is_none_or(|s| time >= s)
            && self.until.as_deref().is_none_or(|u| time < u)
            && self.principal_hash.as_deref().is_none_or(|p| r["principal_hmac"] == p)
            && self.decision.as_deref().is_none_or(|d| r["decision"] == d)
            && self.event.as_deref().is_none_or(|e| r["event"] == e)
    }
}

fn print_record(out: &mut impl Write, index: u64, payload: &[u8]) -> std::io::Result<()> {
    let line = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(mut m)) => {
            m.insert("index".into(), index.into());
            Value::Object(m).to_string()
        }
        _ => json!({"index": index, "unparsed": String::from_utf8_lossy(payload)}).to_string(),
    };
    writeln!(out, "{line}")
}

/// `ward audit query`: matching records as JSON lines (with their index).
pub fn query(loc: &LogLocation, filter: &Filter) -> Result<(), String> {
    filter.check()?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for item in SegmentReader::new(&loc.dir.join("segments"), 0).map_err(|e| e.to_string())? {
        match item {
            ReadItem::Record(r) => {
                let v: Value = serde_json::from_slice(&r.payload).unwrap_or(Value::Null);
                if filter.matches(&v)
                    && let Err(e) = print_record(&mut out, r.index, &r.payload)
                {
                    // `| head` closed the pipe: done, quietly.
                    return if e.kind() == std::io::ErrorKind::BrokenPipe { Ok(()) } else { Err(e.to_string()) };
                }
            }
            ReadItem::Problem(p) => {
                eprintln!("ward: skipping damaged part of the log: {p:?} (run `ward audit verify`)")
            }
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// An output error as `tail` reports it: a closed pipe (`| head`) is the
/// reader being done, reported as the empty message, which ends quietly.
fn quiet_pipe(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::BrokenPipe { String::new() } else { e.to_string() }
}

/// `ward audit tail [-n N] [-f]`.
pub fn tail(loc: &LogLocation, lines: u64, follow: bool) -> Result<(), String> {
    match tail_inner(loc, lines, follow) {
        Err(e) if e.is_empty() => Ok(()),
        other => other,
    }
}

fn tail_inner(loc: &LogLocation, lines: u64, follow: bool) -> Result<(), String> {
    let segments = loc.dir.join("segments");
    let mut next = 0u64;
    let mut window = std::collections::VecDeque::new();
    for item in SegmentReader::new(&segments, 0).map_err(|e| e.to_string())? {
        if let ReadItem::Record(r) = item {
            next = r.index + 1;
            window.push_back(r);
            if window.len() as u64 > lines {
                window.pop_front();
            }
        }
    }
    let mut out = std::io::stdout().lock();
    for r in window {
        print_record(&mut out, r.index, &r.payload).map_err(quiet_pipe)?;
    }
    out.flush().map_err(quiet_pipe)?;
    // Follow: read only what was appended since (whole frames only).
    if !follow {
        return Ok(());
    }
    let mut tailer = ward_audit::segments::Tailer::new(&segments, next);
    loop {
        let records = tailer.poll(4096, u64::MAX).map_err(|e| e.to_string())?;
        if records.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
        for r in records {
            print_record(&mut out, r.index, &r.payload).map_err(quiet_pipe)?;
        }
        out.flush().map_err(quiet_pipe)?;
    }
}

/// `ward audit keygen --out FILE`: a new checkpoint signing key (0600); prints its verifier key.
pub fn keygen(out: &Path, name: &str) -> Result<(), String> {
    let (signer, text) = NoteSigner::generate(name).map_err(|e| format!("--name: {e}"))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("{}: cannot create the directory: {e}", dir.display()))?;
    }
    crate::init::write_private(out, format!("{}\n", text.as_str()).as_bytes())
        .map_err(|e| format!("{}: {e}", out.display()))?;
    write_stdout(&format!("{}\n", signer.verifier_key()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_filters_refuse_values_that_could_never_match() {
        let ok = Filter {
            since: Some("2026-12-04".into()),
            until: Some("2026-12-04T10:00:00Z".into()),
            decision: Some("deny".into()),
            event: Some("request".into()),
            principal_hash: Some("ab12".into()),
        };
        assert_eq!(ok.check(), Ok(()));
        for bad in [
            Filter { decision: Some("DENY".into()), ..Filter::default() },
            Filter { event: Some("requests".into()), ..Filter::default() },
            Filter { since: Some("yesterday".into()), ..Filter::default() },
            Filter { until: Some("2026-1-4".into()), ..Filter::default() },
            Filter { principal_hash: Some("alice".into()), ..Filter::default() },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
