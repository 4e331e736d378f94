//! ArcSight Common Event Format (CEF 0), the fallback for SIEMs that
//! predate OCSF. One line per record:
//!
//! ```text
//! CEF:0|Ward|Ward|0.1.0|<reason>|<event> <decision>|<severity>|rt=… act=… …
//! ```
//!
//! Header fields escape `\` and `|`; extension values escape `\`, `=` and
//! line breaks, as the CEF specification requires.

use serde_json::Value;

fn header(v: &str) -> String {
    v.replace('\\', "\\\\").replace('|', "\\|").replace(['\r', '\n'], " ")
}

fn ext(v: &str) -> String {
    v.replace('\\', "\\\\").replace('=', "\\=").replace('\r', "\\r").replace('\n', "\\n")
}

/// Map one Ward record to a CEF line (no trailing newline).
#[must_use]
pub fn to_cef(record: &Value, index: u64, origin: &str) -> String {
    let s = |k: &str| record.get(k).and_then(Value::as_str).unwrap_or("");
    let denied = s("decision") == "deny";
    let severity = match (crate::detection_severity(record), denied, s("reason").starts_with("token_")) {
        (Some("critical"), ..) => 10,
        (Some("high"), ..) => 8,
        (Some("medium"), ..) => 5,
        (Some(_), ..) => 3,
        (None, true, true) => 7,
        (None, true, false) => 5,
        (None, false, _) => 3,
    };
    let mut out = format!(
        "CEF:0|Ward|Ward|{}|{}|{} {}|{severity}|",
        header(env!("CARGO_PKG_VERSION")),
        header(s("reason")),
        header(s("event")),
        header(s("decision")),
    );
    let mut fields: Vec<(&str, String)> = Vec::new();
    if let Some(ms) = crate::ocsf::epoch_millis(s("time")) {
        fields.push(("rt", ms.to_string()));
    }
    fields.push(("act", s("decision").to_owned()));
    fields.push(("outcome", s("reason").to_owned()));
    fields.push(("externalId", s("request_id").to_owned()));
    fields.push(("deviceExternalId", origin.to_owned()));
    fields.push(("cn2Label", "auditIndex".to_owned()));
    fields.push(("cn2", index.to_string()));
    for (key, field) in
        [("requestMethod", "method"), ("request", "path"), ("suser", "principal_hmac"), ("app", "protocol")]
    {
        if !s(field).is_empty() && s(field) != "-" {
            fields.push((key, s(field).to_owned()));
        }
    }
    if let Some(status) = record.get("status").and_then(Value::as_u64).filter(|s| *s > 0) {
        fields.push(("cn1Label", "httpStatus".to_owned()));
        fields.push(("cn1", status.to_string()));
    }
    for (label_key, label, key, field) in [
        ("cs1Label", "clientIpHmac", "cs1", "client_ip_hmac"),
        ("cs2Label", "route", "cs2", "route"),
        ("cs3Label", "policy", "cs3", "policy"),
    ] {
        if !s(field).is_empty() {
            fields.push((label_key, label.to_owned()));
            fields.push((key, s(field).to_owned()));
        }
    }
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={}", ext(v))).collect();
    out.push_str(&body.join(" "));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cef_lines_escape_and_carry_the_decision() {
        let r = json!({"event":"request","time":"2026-11-23T10:15:30.250Z","request_id":"r1","decision":"deny",
                       "reason":"denied_by_policy","method":"GET","path":"/a=b\\c|d\ne","status":403,
                       "principal_hmac":"ph","client_ip_hmac":"ih","route":"api","policy":"ns/p#0","protocol":"HTTP/2.0"});
        let line = to_cef(&r, 7, "ward.local/audit");
        assert!(line.starts_with("CEF:0|Ward|Ward|"), "{line}");
        assert!(line.contains("|denied_by_policy|request deny|5|rt=1795428930250 act=deny"), "{line}");
        assert!(line.contains(r"request=/a\=b\\c|d\ne "), "{line}");
        assert!(
            line.contains("cn2Label=auditIndex cn2=7") && line.contains("cn1=403") && line.contains("suser=ph"),
            "{line}"
        );
        assert!(line.contains("cs1Label=clientIpHmac cs1=ih") && line.contains("cs3Label=policy cs3=ns/p#0"), "{line}");
        assert!(!line.contains('\n'));
        let t = to_cef(&json!({"event":"request","decision":"deny","reason":"token_expired|x"}), 1, "o");
        assert!(t.contains(r"|token_expired\|x|request deny|7|"), "{t}");
    }
}
