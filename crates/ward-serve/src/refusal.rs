//! Refusals made below the request pipeline — at accept, in the TLS
//! handshake, or by the HTTP codec before a request was formed — reported
//! to the listener's recorder (the audit log, which hands them to
//! detection).
//!
//! A flood of refused connections must not become a flood of records (a
//! blocked address reconnecting in a loop, a scanner's failed handshakes):
//! per source (IPv4 address, IPv6 /64) and reason, the first refusal is
//! recorded at once and the rest of a [`WINDOW`] are counted and carried by
//! the next record (`repeated`). The table of sources is bounded; when it is
//! full, refusals of new sources share one entry.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ward_core::ReasonCode;

/// How long one source's refusals of one kind are summed into one record.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Sources tracked at once; beyond this, new sources share one entry.
pub const MAX_SOURCES: usize = 4096;

/// A refusal below the request pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Which listener refused (`gateway`, `control plane`, `admin API`).
    pub listener: &'static str,
    /// The client's address.
    pub peer: SocketAddr,
    /// The stable reason code.
    pub reason: ReasonCode,
    /// The HTTP status the client was sent, 0 when the connection was
    /// closed without an answer.
    pub status: u16,
    /// `TCP`, `TLS`, `HTTP/1.1` or `HTTP/2.0`: where the refusal happened.
    pub protocol: &'static str,
    /// What exactly (for operators; never secrets or request data).
    pub detail: String,
    /// Refusals of the same source and reason since the last record, not
    /// recorded one by one.
    pub repeated: u64,
}

/// Where refusals go: the listener's recorder.
pub trait RefusalSink: Send + Sync {
    /// Record one refusal (already dampened).
    fn refused(&self, refusal: Refusal);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    source: IpAddr,
    reason: ReasonCode,
}

#[derive(Debug)]
struct Entry {
    /// The next refusal at or after this instant is recorded.
    next: Instant,
    /// Refusals counted, not recorded, since the last record.
    suppressed: u64,
    /// The latest of them, recorded with the count when its window ends.
    last: Option<Refusal>,
}

/// The dampened reporter of one listener (shared by its workers).
pub struct Refusals {
    sink: Option<Arc<dyn RefusalSink>>,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<Key, Entry>,
    /// When a full table was last swept (a sweep per new source would put
    /// a scan of the table on the accept path of a flood).
    swept: Option<Instant>,
}

impl std::fmt::Debug for Refusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refusals").field("recorded", &self.sink.is_some()).finish_non_exhaustive()
    }
}

/// The source a refusal is counted under: an IPv4 address, or an IPv6 /64
/// (one host's share of addresses).
fn source_of(ip: IpAddr) -> IpAddr {
    match ward_core::net::canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Remove the entries whose window has passed (all of them with `all`),
/// handing their counted refusals to `due`.
fn sweep(entries: &mut HashMap<Key, Entry>, now: Instant, all: bool, due: &mut Vec<Refusal>) {
    entries.retain(|_, e| {
        if !all && e.next > now {
            return true;
        }
        if let Some(mut last) = e.last.take() {
            last.repeated = e.suppressed;
            due.push(last);
        }
        false
    });
}

fn unspecified() -> IpAddr {
    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
}

/// The wider network a source belongs to: IPv4 /16, IPv6 /32.
fn network_of(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            IpAddr::V4(std::net::Ipv4Addr::new(o[0], o[1], 0, 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], 0, 0, 0, 0, 0, 0))
        }
    }
}

impl Refusals {
    /// Report to `sink` (`None`: only log).
    #[must_use]
    pub fn new(sink: Option<Arc<dyn RefusalSink>>) -> Arc<Self> {
        Arc::new(Self { sink, table: Mutex::new(Table::default()) })
    }

    /// Report a refusal: logged always, recorded unless the same source
    /// had one of this reason recorded within [`WINDOW`].
    pub fn report(&self, refusal: Refusal) {
        tracing::debug!(
            listener = refusal.listener,
            peer = %refusal.peer,
            reason = refusal.reason.as_str(),
            detail = %refusal.detail,
            "connection refused"
        );
        let Some(sink) = &self.sink else { return };
        let mut due = Vec::new();
        self.admit(refusal, Instant::now(), &mut due);
        for r in due {
            sink.refused(r);
        }
    }

    /// The dampening itself, with time as an argument: what is due goes to `due`.
    fn admit(&self, mut refusal: Refusal, now: Instant, due: &mut Vec<Refusal>) {
        let Ok(mut table) = self.table.lock() else {
            // A poisoned table: record everything rather than lose it.
            due.push(refusal);
            return;
        };
        let mut key = Key { source: source_of(refusal.peer.ip()), reason: refusal.reason };
        let Table { entries, swept } = &mut *table;
        if !entries.contains_key(&key) && entries.len() >= MAX_SOURCES {
            if swept.is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1)) {
                *swept = Some(now);
                sweep(entries, now, false, due);
            }
            if entries.len() >= MAX_SOURCES {
                // Still full: the source shares an entry with its wider
                // network (IPv4 /16, IPv6 /32) — one attacker filling the
                // table does not fold everyone else's refusals into its own
                // — and past twice the size, with everyone.
                key.source = if entries.len() < 2 * MAX_SOURCES { network_of(key.source) } else { unspecified() };
            }
        }
        match entries.get_mut(&key) {
            Some(e) if e.next > now => {
                e.suppressed += 1;
                e.last = Some(refusal);
            }
            Some(e) => {
                refusal.repeated = e.suppressed;
                e.suppressed = 0;
                e.last = None;
                e.next = now + WINDOW;
                due.push(refusal);
            }
            None => {
                entries.insert(key, Entry { next: now + WINDOW, suppressed: 0, last: None });
                due.push(refusal);
            }
        }
    }

    /// Record what is still counted (at shutdown, or from a sweep): every
    /// entry whose window has passed, or all of them with `all`.
    pub fn flush(&self, all: bool) {
        let Some(sink) = &self.sink else { return };
        let now = Instant::now();
        let mut due = Vec::new();
        if let Ok(mut table) = self.table.lock() {
            sweep(&mut table.entries, now, all, &mut due);
        }
        for r in due {
            sink.refused(r);
        }
    }
}

/// The recorder every listener uses: each refusal becomes an audit record
/// (`event: connection`, decision `deny`, the client address as an HMAC
/// under the audit key) and a detection event.
pub struct AuditRefusals {
    audit: Arc<dyn ward_audit::AuditSink>,
    hasher: ward_crypto::KeyedHasher,
    detector: Option<Arc<ward_detect::Detector>>,
    source: ward_detect::event::Source,
}

impl std::fmt::Debug for AuditRefusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditRefusals").finish_non_exhaustive()
    }
}

impl AuditRefusals {
    /// Record into `audit`, and hand to `detector` as events of `source`.
    #[must_use]
    pub fn new(
        audit: Arc<dyn ward_audit::AuditSink>,
        hasher: ward_crypto::KeyedHasher,
        detector: Option<Arc<ward_detect::Detector>>,
        source: ward_detect::event::Source,
    ) -> Arc<Self> {
        Arc::new(Self { audit, hasher, detector, source })
    }
}

impl RefusalSink for AuditRefusals {
    fn refused(&self, r: Refusal) {
        let mut record = ward_audit::AuditRecord::now("connection", "-", r.reason, ward_core::Effect::Deny);
        // Tagged as the request records tag it (`ward audit hash ADDRESS`).
        let ip = r.peer.ip();
        record.client_ip_hmac = self.hasher.tag_hex(ip.to_string().as_bytes());
        record.status = r.status;
        record.protocol = r.protocol;
        record.connection =
            Some(ward_audit::ConnectionRefusal { listener: r.listener, detail: r.detail, repeated: r.repeated });
        if let Err(e) = self.audit.record(record) {
            tracing::error!(error = %e, listener = r.listener, "connection refusal could not be audited");
        }
        if let Some(d) = &self.detector {
            d.observe(&ward_detect::event::Event::new(self.source, r.reason, r.status, ip, ""));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(ip: &str, reason: ReasonCode) -> Refusal {
        Refusal {
            listener: "gateway",
            peer: SocketAddr::new(ip.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)), 1),
            reason,
            status: 0,
            protocol: "TCP",
            detail: String::new(),
            repeated: 0,
        }
    }

    #[test]
    fn one_record_per_source_and_reason_per_window_carrying_the_count() {
        let r = Refusals::new(None);
        let t0 = Instant::now();
        let mut due = Vec::new();
        for _ in 0..100 {
            r.admit(refusal("10.0.0.1", ReasonCode::AddressBlocked), t0, &mut due);
        }
        assert_eq!(due.len(), 1, "the first is recorded, the rest counted");
        r.admit(refusal("10.0.0.1", ReasonCode::TlsHandshakeFailed), t0, &mut due);
        r.admit(refusal("10.0.0.2", ReasonCode::AddressBlocked), t0, &mut due);
        assert_eq!(due.len(), 3, "another reason or source is recorded at once");
        // An IPv6 /64 is one source.
        r.admit(refusal("2001:db8::1", ReasonCode::AddressBlocked), t0, &mut due);
        r.admit(refusal("2001:db8::2", ReasonCode::AddressBlocked), t0, &mut due);
        assert_eq!(due.len(), 4);
        r.admit(refusal("10.0.0.1", ReasonCode::AddressBlocked), t0 + WINDOW, &mut due);
        assert_eq!(due.len(), 5);
        assert_eq!(due[4].repeated, 99, "the next record carries what was counted");
    }

    #[test]
    fn a_full_table_shares_one_entry_and_loses_no_count() {
        let r = Refusals::new(None);
        let t0 = Instant::now();
        let mut due = Vec::new();
        for i in 0..MAX_SOURCES {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + u32::try_from(i).unwrap_or(0)));
            let mut x = refusal("0.0.0.0", ReasonCode::AddressBlocked);
            x.peer = SocketAddr::new(ip, 1);
            r.admit(x.clone(), t0, &mut due);
            r.admit(x, t0, &mut due);
        }
        assert_eq!(due.len(), MAX_SOURCES);
        due.clear();
        // New sources while every window is open: one entry per wider
        // network, so another network's refusals are still its own.
        for _ in 0..10 {
            r.admit(refusal("192.0.2.1", ReasonCode::AddressBlocked), t0, &mut due);
        }
        r.admit(refusal("192.0.7.7", ReasonCode::AddressBlocked), t0, &mut due);
        assert_eq!(due.len(), 1, "192.0.0.0/16 shares one entry");
        r.admit(refusal("198.51.100.1", ReasonCode::AddressBlocked), t0, &mut due);
        assert_eq!(due.len(), 2, "another network is recorded at once");
        // Once the windows pass, a new source makes room, and the counted
        // refusals come out with their counts.
        due.clear();
        r.admit(refusal("192.0.2.9", ReasonCode::AddressBlocked), t0 + WINDOW, &mut due);
        let counted: u64 = due.iter().map(|d| d.repeated).sum();
        assert_eq!(counted, MAX_SOURCES as u64 + 10, "every suppressed refusal is accounted for");
        assert!(r.table.lock().map(|t| t.entries.len()).unwrap_or(usize::MAX) <= 2);
    }
}
