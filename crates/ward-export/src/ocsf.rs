//! Ward audit records as OCSF events (Open Cybersecurity Schema Framework
//! 1.3), the interchange schema SIEMs (Splunk, Sentinel, Security Lake,
//! Chronicle…) ingest without custom parsers.
//!
//! | Ward record | OCSF class | activity |
//! |---|---|---|
//! | request refused for a token reason (`token_*`) | Authentication (3002) | Logon (1), status Failure |
//! | token service: issued, refused, client authentication failed | Authentication (3002) | Logon (1) |
//! | token service: revoked | Authentication (3002) | Logoff (2) |
//! | login page: logins, failed logins, refused authorization requests | Authentication (3002) | Logon (1) |
//! | any other request | HTTP Activity (4002) | by method (Get 3, Post 6, Put 7, Delete 2, …, Other 99); disposition Allowed (1) / Blocked (2) |
//! | `policy_change`, `key_change` | Entity Management (3004) | Update (3) |
//! | `startup`, `shutdown` | Application Lifecycle (6002) | Start (3) / Stop (4) |
//! | `admin` | API Activity (6003) | Read (2) |
//! | detections (issue #7) | Detection Finding (2004) | Create (1) |
//! | anything else | Base Event (0) | Other (99) |
//!
//! Every event carries `metadata.uid = "<origin>:<index>"` and
//! `metadata.sequence = <index>`: delivery is at least once, and these let
//! the SIEM drop duplicates. The Ward record itself travels in
//! `unmapped.ward` so nothing is lost in translation. Personal data stays
//! as Ward stored it: HMAC tags (`actor.user.uid`, `src_endpoint.uid`),
//! never clear values.

use serde_json::{Map, Value, json};

/// The OCSF schema version these events follow.
pub const OCSF_VERSION: &str = "1.3.0";

fn http_activity(method: &str) -> (u64, &'static str) {
    match method {
        "CONNECT" => (1, "Connect"),
        "DELETE" => (2, "Delete"),
        "GET" => (3, "Get"),
        "HEAD" => (4, "Head"),
        "OPTIONS" => (5, "Options"),
        "POST" => (6, "Post"),
        "PUT" => (7, "Put"),
        "TRACE" => (8, "Trace"),
        _ => (99, "Other"),
    }
}

/// Epoch milliseconds from Ward's `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn epoch_millis(time: &str) -> Option<i64> {
    let b = time.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[10] != b'T' || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| time.get(r).and_then(|s| s.parse::<i64>().ok());
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    // Days from civil (H. Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms)
}

/// Map one Ward record (as stored) to an OCSF event.
#[must_use]
pub fn to_ocsf(record: &Value, index: u64, origin: &str) -> Value {
    let s = |k: &str| record.get(k).and_then(Value::as_str).unwrap_or("");
    let event = s("event");
    let reason = s("reason");
    let denied = s("decision") == "deny";
    let (category, class, class_name, activity, activity_name) = match event {
        "request" if reason.starts_with("token_") => (3, 3002, "Authentication", 1, "Logon".to_owned()),
        "token" if reason == "revocation_recorded" => (3, 3002, "Authentication", 2, "Logoff".to_owned()),
        "token" | "login" => (3, 3002, "Authentication", 1, "Logon".to_owned()),
        "request" => {
            let (a, n) = http_activity(s("method"));
            (4, 4002, "HTTP Activity", a, n.to_owned())
        }
        "policy_change" | "key_change" => (3, 3004, "Entity Management", 3, "Update".to_owned()),
        "startup" => (6, 6002, "Application Lifecycle", 3, "Start".to_owned()),
        "shutdown" => (6, 6002, "Application Lifecycle", 4, "Stop".to_owned()),
        "admin" | "registry" => (6, 6003, "API Activity", 2, "Read".to_owned()),
        "detection" => (2, 2004, "Detection Finding", 1, "Create".to_owned()),
        _ => (0, 0, "Base Event", 99, "Other".to_owned()),
    };
    let mut e = Map::new();
    e.insert("category_uid".into(), category.into());
    e.insert("class_uid".into(), class.into());
    e.insert("class_name".into(), class_name.into());
    e.insert("activity_id".into(), activity.into());
    e.insert("activity_name".into(), activity_name.into());
    e.insert("type_uid".into(), (class * 100 + activity).into());
    e.insert("time".into(), epoch_millis(s("time")).map_or(Value::Null, Into::into));
    let (severity_id, severity) = match crate::detection_severity(record) {
        Some("critical") => (5, "Critical"),
        Some("high") => (4, "High"),
        Some("medium") => (3, "Medium"),
        Some(_) => (2, "Low"),
        None if denied => (3, "Medium"),
        None => (1, "Informational"),
    };
    e.insert("severity_id".into(), severity_id.into());
    e.insert("severity".into(), severity.into());
    if let Some(d) = record.get("detection") {
        // OCSF Detection Finding: what was found, about whom.
        e.insert(
            "finding_info".into(),
            json!({
                "title": d.get("scenario").cloned().unwrap_or(Value::Null),
                "uid": s("request_id"),
                "desc": d.get("detail").cloned().unwrap_or(Value::Null),
                "types": [d.get("action").cloned().unwrap_or(Value::Null)],
            }),
        );
        e.insert("unmapped".into(), json!({ "ward_detection": d }));
    }
    e.insert("status_id".into(), (if denied { 2 } else { 1 }).into());
    e.insert("status".into(), (if denied { "Failure" } else { "Success" }).into());
    e.insert("status_code".into(), reason.into());
    e.insert(
        "metadata".into(),
        json!({
            "version": OCSF_VERSION,
            "uid": format!("{origin}:{index}"),
            "sequence": index,
            "correlation_uid": s("request_id"),
            "log_name": origin,
            "log_provider": "ward-audit",
            "product": { "name": "Ward", "vendor_name": "Ward", "version": env!("CARGO_PKG_VERSION") },
        }),
    );
    if let Some(p) = record.get("principal_hmac").and_then(Value::as_str) {
        let mut user = json!({ "uid": p });
        if let Some(iss) = record.get("issuer").and_then(Value::as_str) {
            user["domain"] = iss.into();
        }
        e.insert("actor".into(), json!({ "user": user }));
        if class == 3002 {
            e.insert("user".into(), user);
        }
    }
    if !s("client_ip_hmac").is_empty() {
        e.insert("src_endpoint".into(), json!({ "uid": s("client_ip_hmac") }));
    }
    if event == "request" || event == "admin" {
        e.insert("http_request".into(), json!({ "http_method": s("method"), "url": { "path": s("path") }, "version": s("protocol"), "uid": s("request_id") }));
        e.insert("http_response".into(), json!({ "code": record.get("status").cloned().unwrap_or(Value::Null) }));
    }
    if class == 4002 || class == 3002 {
        e.insert("disposition_id".into(), (if denied { 2 } else { 1 }).into());
        e.insert("disposition".into(), (if denied { "Blocked" } else { "Allowed" }).into());
        if let Some(route) = record.get("route").and_then(Value::as_str) {
            e.insert("dst_endpoint".into(), json!({ "svc_name": route }));
        }
    }
    if let Some(policy) = record.get("policy").and_then(Value::as_str) {
        e.insert("policy".into(), json!({ "uid": policy, "name": policy }));
    }
    if event == "key_change" {
        let k = &record["key_change"];
        e.insert("entity".into(), json!({ "type": "key", "name": k["key"], "uid": k["fingerprint"] }));
    }
    if event == "policy_change" {
        let p = &record["policy_change"];
        e.insert("entity".into(), json!({ "type": "policy_bundle", "uid": p["new_digest"] }));
        e.insert("entity_result".into(), json!({ "type": "policy_bundle", "uid": p["previous_digest"] }));
    }
    e.insert("unmapped".into(), json!({ "ward": record }));
    Value::Object(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(reason: &str, decision: &str, method: &str) -> Value {
        json!({"schema":"ward.audit.v2","event":"request","time":"2026-11-23T10:15:30.250Z","request_id":"abc",
               "decision":decision,"reason":reason,"principal_hmac":"ph","issuer":"https://issuer.test","route":"api",
               "method":method,"path":"/api/x","status":200,"client_ip_hmac":"ih","protocol":"HTTP/1.1"})
    }

    #[test]
    fn requests_map_to_http_activity_or_authentication() {
        let e = to_ocsf(&request("allowed_by_policy", "allow", "POST"), 41, "ward.local/audit");
        assert_eq!(
            (e["class_uid"].as_u64(), e["activity_id"].as_u64(), e["type_uid"].as_u64()),
            (Some(4002), Some(6), Some(400_206))
        );
        assert_eq!(e["disposition"], "Allowed");
        assert_eq!(e["time"], 1_795_428_930_250_i64, "2026-11-23T10:15:30.250Z");
        assert_eq!(e["metadata"]["uid"], "ward.local/audit:41");
        assert_eq!(e["actor"]["user"]["uid"], "ph");
        assert_eq!(e["src_endpoint"]["uid"], "ih");
        assert_eq!(e["unmapped"]["ward"]["request_id"], "abc");

        let a = to_ocsf(&request("token_expired", "deny", "GET"), 1, "o");
        assert_eq!(
            (a["class_uid"].as_u64(), a["activity_id"].as_u64(), a["status"].as_str()),
            (Some(3002), Some(1), Some("Failure"))
        );
        assert_eq!((a["status_code"].as_str(), a["severity_id"].as_u64()), (Some("token_expired"), Some(3)));
        let d = to_ocsf(&request("denied_by_policy", "deny", "BREW"), 2, "o");
        assert_eq!(
            (d["class_uid"].as_u64(), d["activity_id"].as_u64(), d["disposition_id"].as_u64()),
            (Some(4002), Some(99), Some(2))
        );
    }

    #[test]
    fn lifecycle_changes_and_admin_events_have_their_classes() {
        let mk = |event: &str| json!({"event": event, "time": "1970-01-01T00:00:01.000Z", "decision": "allow", "reason": "x"});
        let class = |event: &str| {
            let e = to_ocsf(&mk(event), 0, "o");
            (e["class_uid"].as_u64().unwrap_or(9), e["activity_id"].as_u64().unwrap_or(9))
        };
        assert_eq!(class("startup"), (6002, 3));
        assert_eq!(class("shutdown"), (6002, 4));
        assert_eq!(class("policy_change"), (3004, 3));
        assert_eq!(class("key_change"), (3004, 3));
        assert_eq!(class("admin"), (6003, 2));
        assert_eq!(class("detection"), (2004, 1));
        assert_eq!(class("audit_log_recovered"), (0, 99));
        assert_eq!(class("token"), (3002, 1));
        assert_eq!(class("login"), (3002, 1));
        assert_eq!(to_ocsf(&mk("startup"), 0, "o")["time"], 1000);
        assert_eq!(epoch_millis("garbage"), None);
    }
}
