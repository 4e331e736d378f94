//! Export of Ward's audit log to SIEMs.
//!
//! Each exporter follows the log from a persisted cursor, renders records
//! as OCSF events ([`ocsf`]), CEF lines ([`cef`]) or Ward's own JSON, and
//! delivers them in batches to a JSON-lines file, a syslog collector (RFC
//! 5424 over TLS, [`syslog`]) or an HTTPS webhook ([`dest`]).
//!
//! Delivery is at least once: the cursor (`<log>/export/<name>.cursor`)
//! advances only after a batch was accepted (file synced, TLS write
//! flushed, webhook answered 2xx), so a crash re-sends at most the batch in
//! flight; OCSF `metadata.uid` / CEF `cn2` carry the record's index for
//! de-duplication. Only durable records are exported — the SIEM never sees
//! a record the log could still lose. A destination that is down is retried
//! with capped exponential backoff; the gateway is never slowed by it.
#![forbid(unsafe_code)]

pub mod cef;
pub mod dest;
pub mod ocsf;
pub mod syslog;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use ward_audit::checkpoints::write_atomic;
use ward_audit::segments::Tailer;

pub use dest::Destination;

/// Why an export is misconfigured or a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The exporter cannot be built from its settings.
    #[error("export configuration: {0}")]
    Config(String),
    /// A batch was not accepted (retried).
    #[error("delivery failed: {0}")]
    Delivery(String),
    /// The log cannot be read.
    #[error("reading the audit log: {0}")]
    Log(String),
}

/// How records are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OCSF 1.3 events (JSON).
    Ocsf,
    /// ArcSight CEF lines (syslog and file only).
    Cef,
    /// Ward's own record JSON, unchanged.
    Raw,
}

impl Format {
    /// Names accepted in configuration.
    pub const NAMES: [(&'static str, Self); 3] = [("ocsf", Self::Ocsf), ("cef", Self::Cef), ("raw", Self::Raw)];
}

/// Where an exporter delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// JSON lines (or CEF lines) appended to a file.
    File {
        /// The file.
        path: PathBuf,
    },
    /// RFC 5424 over TLS (RFC 5425).
    Syslog {
        /// `host:port` of the collector.
        address: String,
        /// The name its certificate must carry.
        server_name: String,
        /// CA certificates to trust for it.
        ca_file: PathBuf,
        /// HOSTNAME field of the messages (`-` when empty).
        hostname: String,
    },
    /// JSON array of events POSTed over HTTPS.
    Webhook {
        /// The endpoint (https).
        url: String,
        /// CA certificates to trust for it.
        ca_file: PathBuf,
        /// A file holding a bearer token, if the endpoint wants one.
        token_file: Option<PathBuf>,
    },
}

/// One exporter's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSpec {
    /// Unique name (names the cursor file).
    pub name: String,
    /// Destination.
    pub target: Target,
    /// Rendering.
    pub format: Format,
    /// Records per delivery (default 500).
    pub batch: usize,
    /// Only records of these kinds (`event` field: `detection`, `request`,
    /// `login`…); all when empty. Alerts to a webhook or a pager are an
    /// exporter with `events = ["detection"]`.
    pub events: Vec<String>,
}

/// The severity of a detection record (`low` … `critical`), if it is one.
#[must_use]
pub fn detection_severity(record: &Value) -> Option<&str> {
    record.get("detection")?.get("severity")?.as_str()
}

/// A record rendered for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The event as one line (JSON or CEF).
    pub line: String,
    /// The same as an RFC 5424 message (for syslog).
    pub syslog: String,
}

/// Render one stored record.
#[must_use]
pub fn render(payload: &[u8], index: u64, origin: &str, format: Format, hostname: &str) -> Rendered {
    render_parsed(&parse(payload), payload, index, origin, format, hostname)
}

fn parse(payload: &[u8]) -> Value {
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| serde_json::json!({ "event": "unparsed", "raw": String::from_utf8_lossy(payload) }))
}

fn render_parsed(record: &Value, payload: &[u8], index: u64, origin: &str, format: Format, hostname: &str) -> Rendered {
    let line = match format {
        Format::Ocsf => ocsf::to_ocsf(record, index, origin).to_string(),
        Format::Cef => cef::to_cef(record, index, origin),
        Format::Raw => String::from_utf8_lossy(payload).into_owned(),
    };
    let syslog = syslog::message(record, index, origin, hostname, &line);
    Rendered { line, syslog }
}

/// Progress of one exporter, readable while it runs.
#[derive(Debug, Default)]
pub struct ExportStatus {
    /// The persisted cursor: where a restarted exporter resumes.
    pub cursor: AtomicU64,
    /// The next index to hand to the destination.
    pub delivered: AtomicU64,
    /// Failed delivery attempts so far.
    pub failures: AtomicU64,
}

const IDLE_POLL: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The cursor file of exporter `name` in the log at `log_dir`.
#[must_use]
pub fn cursor_path(log_dir: &Path, name: &str) -> PathBuf {
    log_dir.join("export").join(format!("{name}.cursor"))
}

fn load_cursor(path: &Path) -> Result<u64, ExportError> {
    match std::fs::read_to_string(path) {
        Ok(s) => s.trim().parse().map_err(|_| ExportError::Log(format!("{}: not a record index", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(ExportError::Log(format!("{}: {e}", path.display()))),
    }
}

/// A running exporter.
#[derive(Debug)]
pub struct Exporter {
    spec: ExportSpec,
    log_dir: PathBuf,
    origin: String,
    destination: Destination,
    status: Arc<ExportStatus>,
}

impl Exporter {
    /// Build an exporter for the log at `log_dir` (named `origin` in events).
    ///
    /// # Errors
    /// [`ExportError::Config`] for unusable settings, [`ExportError::Log`]
    /// for an unreadable cursor.
    pub fn new(spec: ExportSpec, log_dir: &Path, origin: &str) -> Result<Self, ExportError> {
        if spec.name.is_empty() || !spec.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(ExportError::Config(format!("exporter name `{}`: use letters, digits, - and _", spec.name)));
        }
        let destination = match &spec.target {
            Target::File { path } => Destination::File(dest::FileDest::new(path)),
            Target::Syslog { address, server_name, ca_file, .. } => {
                Destination::Syslog(Box::new(dest::SyslogDest::new(address, server_name, ca_file)?))
            }
            Target::Webhook { url, ca_file, token_file } => {
                if spec.format == Format::Cef {
                    return Err(ExportError::Config("webhooks carry JSON: use format ocsf or raw".into()));
                }
                Destination::Webhook(Box::new(dest::WebhookDest::new(url, ca_file, token_file.as_deref())?))
            }
        };
        let status = Arc::new(ExportStatus::default());
        status.cursor.store(load_cursor(&cursor_path(log_dir, &spec.name))?, Ordering::Release);
        Ok(Self { spec, log_dir: log_dir.to_owned(), origin: origin.to_owned(), destination, status })
    }

    /// Its progress counters.
    #[must_use]
    pub fn status(&self) -> Arc<ExportStatus> {
        Arc::clone(&self.status)
    }

    /// Deliver records until `stop` turns true. `durable` says how many
    /// records are durable (only those are exported).
    ///
    /// Destinations without acknowledgements (syslog) keep a resend window:
    /// when their connection turns out to be lost, everything sent within
    /// the window is sent again, and the persisted cursor stays at the
    /// window's start — duplicates (de-duplicable by index) rather than loss.
    pub async fn run(mut self, durable: impl Fn() -> u64 + Send, mut stop: tokio::sync::watch::Receiver<bool>) {
        let hostname = match &self.spec.target {
            Target::Syslog { hostname, .. } => hostname.clone(),
            _ => String::new(),
        };
        let segments = self.log_dir.join("segments");
        let cursor_file = cursor_path(&self.log_dir, &self.spec.name);
        let window = self.destination.resend_window();
        let start = self.status.cursor.load(Ordering::Acquire);
        let mut tailer = Tailer::new(&segments, start);
        let mut window_start = start;
        let mut backoff = IDLE_POLL;
        let mut last_error: Option<String> = None;
        // Stops when told to, or when whoever could tell it is gone.
        while !*stop.borrow() && stop.has_changed().is_ok() {
            if self.destination.connection_lost().await {
                tracing::warn!(exporter = %self.spec.name, from = window_start, "audit export connection lost; re-sending the unconfirmed window");
                tailer = Tailer::new(&segments, window_start);
            }
            self.status.delivered.store(tailer.next_index(), Ordering::Release);
            let records = match tailer.poll(self.spec.batch.max(1), durable()) {
                Ok(r) => {
                    last_error = None;
                    r
                }
                Err(e) => {
                    // Said once per distinct problem, not once per poll.
                    let text = e.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        tracing::error!(exporter = %self.spec.name, error = %text, "audit export cannot read the log");
                        last_error = Some(text);
                    }
                    tailer = Tailer::new(&segments, tailer.next_index());
                    Vec::new()
                }
            };
            let (Some(first), Some(last)) = (records.first().map(|r| r.index), records.last().map(|r| r.index)) else {
                let _ = tokio::time::timeout(IDLE_POLL, stop.changed()).await;
                continue;
            };
            let wanted = &self.spec.events;
            let events: Vec<Rendered> = records
                .iter()
                .filter_map(|r| {
                    let record = parse(&r.payload);
                    let kind = record.get("event").and_then(Value::as_str).unwrap_or("");
                    (wanted.is_empty() || wanted.iter().any(|w| w == kind))
                        .then(|| render_parsed(&record, &r.payload, r.index, &self.origin, self.spec.format, &hostname))
                })
                .collect();
            // A batch the filter emptied is passed over, its cursor advanced.
            let sent = if events.is_empty() { Ok(()) } else { self.destination.send(&events).await };
            if let Err(e) = sent {
                self.status.failures.fetch_add(1, Ordering::AcqRel);
                tracing::warn!(exporter = %self.spec.name, error = %e, retry_in = ?backoff, "audit export delivery failed");
                let _ = tokio::time::timeout(backoff, stop.changed()).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                // Resend this batch, or the whole unconfirmed window.
                tailer = Tailer::new(&segments, if window == 0 { first } else { window_start });
                continue;
            }
            backoff = IDLE_POLL;
            let next = last + 1;
            window_start = if window == 0 { next } else { window_start.max(next.saturating_sub(window)) };
            if let Some(dir) = cursor_file.parent()
                && let Err(e) = std::fs::create_dir_all(dir)
                    .and_then(|()| write_atomic(&cursor_file, format!("{window_start}\n").as_bytes(), 0o600))
            {
                // Delivered but not remembered: the batch will be sent again (at least once).
                tracing::error!(exporter = %self.spec.name, error = %e, "cannot persist the export cursor");
            }
            self.status.cursor.store(window_start, Ordering::Release);
            self.status.delivered.store(next, Ordering::Release);
        }
    }
}
