//! `ward detect status`, `ward block add|remove|list`, `ward bouncer
//! add|delete`: threat detection through the control plane's admin API.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::control_cmd::{AdminTarget, failed};

/// `ward detect status`: events, alerts by severity, blocks, refusals, limits, bouncers.
///
/// # Errors
/// A message when the control plane cannot be asked.
pub async fn status(target: &AdminTarget) -> Result<String, String> {
    match target.call(reqwest::Method::GET, "/admin/detect/status", None).await? {
        (200, v) => Ok(render_status(&v)),
        (s, v) => Err(failed(s, &v)),
    }
}

fn render_status(v: &Value) -> String {
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(out, "events observed   {}", n("/events"));
    let _ = writeln!(
        out,
        "alerts            critical {}  high {}  medium {}  low {}",
        n("/alerts/critical"),
        n("/alerts/high"),
        n("/alerts/medium"),
        n("/alerts/low")
    );
    let active = v["active_blocks"].as_object().map(|o| {
        let mut parts: Vec<String> = o.iter().map(|(k, c)| format!("{k} {c}")).collect();
        parts.sort();
        parts.join("  ")
    });
    let _ = writeln!(out, "active blocks     {}", active.filter(|s| !s.is_empty()).unwrap_or_else(|| "none".into()));
    let _ = writeln!(out, "blocks made       {}", n("/blocks_made"));
    let _ = writeln!(
        out,
        "refused           {} connections, {} requests of blocked principals",
        n("/refused/connections"),
        n("/refused/principal_requests")
    );
    let _ = writeln!(out, "live buckets      {}   principal baselines {}", n("/buckets"), n("/baselines"));
    for l in v["rate_limits"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "rate limit        {}{}: {} allowed, {} over the limit, {} keys",
            l["name"].as_str().unwrap_or("?"),
            if l["shadow"].as_bool() == Some(true) { " (shadow)" } else { "" },
            l["allowed"],
            l["limited"],
            l["keys"]
        );
    }
    let allow: Vec<&str> = v["allowlist"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let _ = writeln!(out, "allowlist         {}", if allow.is_empty() { "empty".into() } else { allow.join(", ") });
    for b in v["bouncers"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "bouncer           {} (last pull {})",
            b["name"].as_str().unwrap_or("?"),
            b["last_pull"].as_str().unwrap_or("never")
        );
    }
    out
}

fn decision_line(d: &Value) -> String {
    format!(
        "{:>6}  {:<40}  until {}  {} ({}, offence {}): {}\n",
        d["id"],
        d["target"].as_str().unwrap_or("?"),
        d["until"].as_str().unwrap_or("?"),
        d["scenario"].as_str().unwrap_or("?"),
        d["origin"].as_str().unwrap_or("?"),
        d["offence"],
        d["reason"].as_str().unwrap_or("")
    )
}

/// `ward block add TARGET --for 4h --reason …`.
///
/// # Errors
/// A message naming what the control plane refused.
pub async fn add(target: &AdminTarget, what: &str, duration: &str, reason: Option<&str>) -> Result<String, String> {
    let body = json!({"target": what, "duration": duration, "reason": reason.unwrap_or_default()});
    match target.call(reqwest::Method::POST, "/admin/decisions", Some(body)).await? {
        (201, d) => Ok(format!("blocked\n{}", decision_line(&d))),
        (s, v) => Err(failed(s, &v)),
    }
}

/// `ward block remove ID`.
///
/// # Errors
/// A message when there is no such active decision.
pub async fn remove(target: &AdminTarget, id: u64) -> Result<String, String> {
    match target.call(reqwest::Method::DELETE, &format!("/admin/decisions/{id}"), None).await? {
        (200, d) => Ok(format!("lifted\n{}", decision_line(&d))),
        (s, v) => Err(failed(s, &v)),
    }
}

/// `ward block list`.
///
/// # Errors
/// A message when the control plane cannot be asked.
pub async fn list(target: &AdminTarget) -> Result<String, String> {
    match target.call(reqwest::Method::GET, "/admin/decisions", None).await? {
        (200, Value::Array(ds)) if ds.is_empty() => Ok("no active blocks\n".into()),
        (200, Value::Array(ds)) => Ok(ds.iter().map(decision_line).collect()),
        (s, v) => Err(failed(s, &v)),
    }
}

/// `ward bouncer add NAME`: prints the API key once.
///
/// # Errors
/// A message naming what the control plane refused.
pub async fn bouncer_add(target: &AdminTarget, name: &str) -> Result<String, String> {
    match target.call(reqwest::Method::POST, "/admin/bouncers", Some(json!({"name": name}))).await? {
        (201, v) => Ok(format!(
            "API key for bouncer `{name}` (shown once; give it to the bouncer as its X-Api-Key):\n{}\n",
            v["api_key"].as_str().unwrap_or("?")
        )),
        (s, v) => Err(failed(s, &v)),
    }
}

/// `ward bouncer delete NAME`.
///
/// # Errors
/// A message when there is no such bouncer.
pub async fn bouncer_delete(target: &AdminTarget, name: &str) -> Result<String, String> {
    match target.call(reqwest::Method::DELETE, &format!("/admin/bouncers/{name}"), None).await? {
        (204, _) => Ok(format!("deleted bouncer {name}\n")),
        (s, v) => Err(failed(s, &v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_like_a_report() {
        let v = json!({
            "events": 12, "alerts": {"critical": 1, "high": 2, "medium": 0, "low": 0},
            "active_blocks": {"ip": 2, "principal": 1}, "blocks_made": 3,
            "refused": {"connections": 7, "principal_requests": 1}, "buckets": 4, "baselines": 2,
            "rate_limits": [{"name": "per-ip", "shadow": true, "allowed": 10, "limited": 2, "keys": 1}],
            "allowlist": ["10.0.0.0/8"], "bouncers": [{"name": "fw", "last_pull": null}],
        });
        let text = render_status(&v);
        assert!(text.contains("critical 1  high 2"), "{text}");
        assert!(text.contains("active blocks     ip 2  principal 1"), "{text}");
        assert!(text.contains("per-ip (shadow): 10 allowed, 2 over the limit"), "{text}");
        assert!(text.contains("bouncer           fw (last pull never)"), "{text}");
    }
}
