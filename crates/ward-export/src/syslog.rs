//! RFC 5424 syslog messages, framed for TLS transport as RFC 5425 says
//! (octet counting: `MSG-LEN SP SYSLOG-MSG`).
//!
//! ```text
//! <109>1 2026-11-23T10:15:30.250Z gw-1 ward 4242 request [ward@32473 index="41" origin="ward.local/audit"] {…}
//! ```
//!
//! Facility 13 ("log audit"); severity 6 (informational) for allowed
//! decisions and 4 (warning) for refusals; detections by their own level:
//! critical 2, high 3 (error), medium 4 (warning), low 5 (notice). The structured-data ID uses
//! 32473, the private enterprise number RFC 5612 reserves for examples, until
//! Ward has its own.

use serde_json::Value;

/// Facility 13: log audit.
const FACILITY: u8 = 13;

/// `PARAM-VALUE` escaping (RFC 5424 §6.3.3): `"`, `\` and `]`.
fn sd_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A header field: printable US-ASCII without spaces, at most `max` long, or `-`.
fn token(v: &str, max: usize) -> String {
    let t: String = v.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if t.is_empty() { "-".into() } else { t }
}

/// One RFC 5424 message for `record`, with `msg` (OCSF JSON or CEF) as its body.
#[must_use]
pub fn message(record: &Value, index: u64, origin: &str, hostname: &str, msg: &str) -> String {
    let s = |k: &str| record.get(k).and_then(Value::as_str).unwrap_or("");
    let severity = match crate::detection_severity(record) {
        Some("critical") => 2,
        Some("high") => 3,
        Some("medium") => 4,
        Some(_) => 5,
        None if s("decision") == "deny" => 4,
        None => 6,
    };
    let time = s("time");
    let time = if time.is_empty() { "-" } else { time };
    format!(
        "<{}>1 {time} {} ward {} {} [ward@32473 index=\"{index}\" origin=\"{}\"] {msg}",
        FACILITY * 8 + severity,
        token(hostname, 255),
        std::process::id(),
        token(s("event"), 32),
        sd_escape(origin),
    )
}

/// RFC 5425 octet-counted framing.
#[must_use]
pub fn frame(message: &str) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn detections_carry_their_severity() {
        let r = |sev: &str| json!({"event":"detection","decision":"allow","detection":{"severity":sev}});
        assert!(message(&r("critical"), 1, "o", "h", "{}").starts_with("<106>1 "), "13*8+2");
        assert!(message(&r("high"), 1, "o", "h", "{}").starts_with("<107>1 "));
        assert!(message(&r("medium"), 1, "o", "h", "{}").starts_with("<108>1 "));
        assert!(message(&r("low"), 1, "o", "h", "{}").starts_with("<109>1 "));
    }

    #[test]
    fn messages_follow_rfc_5424_and_frames_count_octets() {
        let r = json!({"event":"request","time":"2026-11-23T10:15:30.250Z","decision":"deny"});
        let m = message(&r, 41, "ward.local/\"audit]", "gw 1", "{\"x\":1}");
        let pid = std::process::id();
        assert_eq!(
            m,
            format!(
                "<108>1 2026-11-23T10:15:30.250Z gw1 ward {pid} request [ward@32473 index=\"41\" origin=\"ward.local/\\\"audit\\]\"] {{\"x\":1}}"
            )
        );
        let allow = message(&json!({"decision":"allow"}), 0, "o", "", "m");
        assert!(allow.starts_with("<110>1 - - ward "), "{allow}");
        let f = frame("héllo");
        assert_eq!(f, b"6 h\xc3\xa9llo");
    }
}
