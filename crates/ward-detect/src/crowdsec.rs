//! Ward's decisions in CrowdSec's bouncer API form, so existing bouncers
//! (firewall, nginx, HAProxy…) enforce them at other layers.
//!
//! `GET /v1/decisions/stream?startup=true|false&scopes=ip,range` with an
//! `X-Api-Key` header answers `{"new": [...], "deleted": [...]}` (either
//! may be `null`, as CrowdSec's LAPI answers). `startup=true` gives every
//! active decision; later pulls give what changed since the bouncer's
//! previous pull. Addresses have scope `Ip`, ranges `Range`, principals
//! `Username` (CrowdSec's scope for user names; bouncers ask for
//! `ip,range` unless told otherwise).

use serde_json::{Value, json};

use crate::blocks::Target;
use crate::decisions::{Decision, Ended};

/// Scopes a bouncer asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes {
    ip: bool,
    range: bool,
    username: bool,
}

impl Default for Scopes {
    /// CrowdSec's default: `ip,range`.
    fn default() -> Self {
        Self { ip: true, range: true, username: false }
    }
}

impl Scopes {
    /// From the `scopes` query parameter (comma-separated, any case);
    /// unknown scopes are ignored, as LAPI does.
    #[must_use]
    pub fn parse(param: Option<&str>) -> Self {
        let Some(list) = param.filter(|p| !p.trim().is_empty()) else { return Self::default() };
        let mut s = Self { ip: false, range: false, username: false };
        for scope in list.split(',').map(|x| x.trim().to_ascii_lowercase()) {
            match scope.as_str() {
                "ip" => s.ip = true,
                "range" => s.range = true,
                "username" | "user" => s.username = true,
                _ => {}
            }
        }
        s
    }

    fn wants(self, t: &Target) -> bool {
        match t.kind() {
            "ip" => self.ip,
            "range" => self.range,
            _ => self.username,
        }
    }
}

/// CrowdSec's name for a target's scope.
#[must_use]
pub fn scope(t: &Target) -> &'static str {
    match t.kind() {
        "ip" => "Ip",
        "range" => "Range",
        _ => "Username",
    }
}

/// A Go `time.Duration` string (`3h59m55s`, `-12s`), as CrowdSec writes them.
#[must_use]
pub fn go_duration(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let total = ms.unsigned_abs() / 1000;
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}s")
    } else {
        format!("{sign}{s}s")
    }
}

fn item(d: &Decision, now: u64) -> Value {
    let left = i64::try_from(d.until).unwrap_or(i64::MAX).saturating_sub(i64::try_from(now).unwrap_or(i64::MAX));
    json!({
        "id": d.id,
        "origin": "ward",
        "type": "ban",
        "scope": scope(&d.target),
        "value": d.target.value(),
        "duration": go_duration(left),
        "until": ward_audit::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(d.until)
        ),
        "scenario": d.scenario,
        "simulated": false,
    })
}

/// The stream answer for `new` and `ended` decisions in `scopes` at `now` (ms).
#[must_use]
pub fn stream(new: &[&Decision], ended: &[&Ended], scopes: Scopes, now: u64) -> Value {
    let new: Vec<Value> = new.iter().filter(|d| scopes.wants(&d.target)).map(|d| item(d, now)).collect();
    let deleted: Vec<Value> =
        ended.iter().filter(|e| scopes.wants(&e.decision.target)).map(|e| item(&e.decision, now)).collect();
    let or_null = |v: Vec<Value>| if v.is_empty() { Value::Null } else { Value::Array(v) };
    json!({ "new": or_null(new), "deleted": or_null(deleted) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::{Decisions, Escalation, Origin};

    #[test]
    fn durations_read_like_go() {
        assert_eq!(go_duration(14_395_000), "3h59m55s");
        assert_eq!(go_duration(59_999), "59s");
        assert_eq!(go_duration(61_000), "1m1s");
        assert_eq!(go_duration(-12_000), "-12s");
    }

    #[test]
    fn scopes_filter_what_bouncers_get() {
        let mut d = Decisions::default();
        let base = std::time::Duration::from_secs(3600);
        for t in ["192.0.2.1", "198.51.100.0/24", "principal:mallory"] {
            let target = Target::parse(t).unwrap();
            d.add(target, base, &Escalation::default(), (Origin::Manual, "manual", "x", crate::Severity::Low), 1_000);
        }
        let (new, ended) = d.since(0);
        let all = stream(&new, &ended, Scopes::default(), 1_000);
        let scopes: Vec<&str> = all["new"].as_array().unwrap().iter().map(|v| v["scope"].as_str().unwrap()).collect();
        assert_eq!(scopes, ["Ip", "Range"]);
        assert_eq!(all["new"][0]["value"], "192.0.2.1");
        assert_eq!(all["new"][0]["duration"], "1h0m0s");
        assert_eq!(all["new"][0]["type"], "ban");
        assert_eq!(all["deleted"], Value::Null);
        let users = stream(&new, &ended, Scopes::parse(Some("Username")), 1_000);
        assert_eq!(users["new"].as_array().unwrap().len(), 1);
        assert_eq!(users["new"][0]["value"], "mallory");
        assert_eq!(stream(&[], &[], Scopes::default(), 0), json!({"new": null, "deleted": null}));
    }
}
