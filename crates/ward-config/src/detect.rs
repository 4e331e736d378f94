//! `[detect]` and `[[rate_limits]]`: threat detection, blocking and rate
//! limits, validated into `ward-detect`'s types.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use ward_core::ReasonCode;
use ward_detect::anomaly::AnomalySpec;
use ward_detect::decisions::Escalation;
use ward_detect::engine::{EngineSpec, PrivilegeSpec};
use ward_detect::gcra::{Gcra, Quota};
use ward_detect::scenario::{self, Action, Distinct, Key, ScenarioSpec, Severity};
use ward_detect::{DetectSettings, Source, Target};

use crate::error::{Invalid, Seg};
use crate::raw;
use crate::validate::{V, at, choice, duration, is_header_name, resolve};

/// `[detect]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectConfig {
    /// What the detector runs.
    pub settings: DetectSettings,
    /// Routes whose successful use counts as admin use (privilege escalation).
    pub admin_routes: Vec<String>,
}

/// What a rate limit counts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    /// The client address.
    Ip,
    /// The authenticated principal (requests without one are not counted).
    Principal,
    /// The route (one budget shared by every client).
    Route,
    /// A claim of the client's token (`claim:tenant`).
    Claim(String),
    /// A request header (`header:x-api-key`; requests without it are not counted).
    Header(String),
}

impl RateKey {
    /// Whether the key is known only after authentication.
    #[must_use]
    pub const fn needs_identity(&self) -> bool {
        matches!(self, Self::Principal | Self::Claim(_))
    }
}

/// One `[[rate_limits]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Name (in `RateLimit-Policy` and the audit log).
    pub name: String,
    /// What is counted.
    pub key: RateKey,
    /// The quota.
    pub gcra: Gcra,
    /// Only these routes (all when empty).
    pub routes: Vec<String>,
    /// Count, but do not refuse.
    pub shadow: bool,
}

fn name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
}

fn routes_known(routes: &[String], known: &HashSet<String>, path: &[Seg]) -> V<()> {
    match routes.iter().find(|r| !known.contains(*r)) {
        Some(r) => Err(Invalid::new(path.to_vec(), format!("no route named `{r}`"))),
        None => Ok(()),
    }
}

pub(crate) fn rate_limits(raw: &[raw::RawRateLimit], routes: &HashSet<String>) -> V<Vec<RateLimitConfig>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut names = HashSet::new();
    for (i, r) in raw.iter().enumerate() {
        let here = [Seg::Key("rate_limits"), Seg::Index(i)];
        let key = |k: &'static str| at(&here, &[Seg::Key(k)]);
        if !name_ok(&r.name) {
            return Err(Invalid::new(key("name"), "1-64 of letters, digits, `-`, `_`, `.` and `/`"));
        }
        if !names.insert(r.name.clone()) {
            return Err(Invalid::new(key("name"), format!("duplicate rate limit `{}`", r.name)));
        }
        let rate_key = match r.key.as_str() {
            "ip" => RateKey::Ip,
            "principal" => RateKey::Principal,
            "route" => RateKey::Route,
            other => match other.split_once(':') {
                Some(("claim", c)) if !c.is_empty() => RateKey::Claim(c.to_owned()),
                Some(("header", h)) if is_header_name(h) => RateKey::Header(h.to_owned()),
                _ => {
                    return Err(Invalid::new(
                        key("key"),
                        format!("`{other}`: use ip, principal, route, claim:NAME or header:name (lower case)"),
                    ));
                }
            },
        };
        let per = duration(Some(&r.per), Duration::ZERO, key("per"))?;
        let quota = Quota { rate: r.rate, period: per, burst: r.burst.unwrap_or(r.rate) };
        let gcra = Gcra::new(quota).map_err(|e| Invalid::new(key("rate"), e.to_string()))?;
        routes_known(&r.routes, routes, &key("routes"))?;
        out.push(RateLimitConfig {
            name: r.name.clone(),
            key: rate_key,
            gcra,
            routes: r.routes.clone(),
            shadow: r.shadow,
        });
    }
    Ok(out)
}

pub(crate) fn detect(d: &raw::RawDetect, base: &Path, routes: &HashSet<String>) -> V<DetectConfig> {
    let here = [Seg::Key("detect")];
    let key = |k: &'static str| at(&here, &[Seg::Key(k)]);
    let mut allowlist = Vec::with_capacity(d.allowlist.len());
    for (i, a) in d.allowlist.iter().enumerate() {
        let t = Target::parse(a).map_err(|e| Invalid::new(at(&here, &[Seg::Key("allowlist"), Seg::Index(i)]), e))?;
        allowlist.push(t);
    }
    let factor = d.escalation.unwrap_or(2.0);
    if !(1.0..=100.0).contains(&factor) {
        return Err(Invalid::new(key("escalation"), "a factor from 1 (no escalation) to 100"));
    }
    let escalation = Escalation {
        factor,
        max: duration(d.max_block.as_deref(), Duration::from_secs(7 * 86_400), key("max_block"))?,
        window: duration(d.offence_window.as_deref(), Duration::from_secs(7 * 86_400), key("offence_window"))?,
    };
    routes_known(&d.admin_routes, routes, &key("admin_routes"))?;
    let privilege = PrivilegeSpec {
        roles: d.privileged_roles.clone().unwrap_or_else(|| PrivilegeSpec::default().roles),
        learning: duration(d.admin_learning.as_deref(), PrivilegeSpec::default().learning, key("admin_learning"))?,
    };
    let mut scenarios = scenario::defaults();
    if let Some(d) = d.block_duration.as_deref() {
        let base = duration(Some(d), Duration::ZERO, key("block_duration"))?;
        if base.is_zero() {
            return Err(Invalid::new(key("block_duration"), "must be greater than 0"));
        }
        for s in &mut scenarios {
            s.duration = base;
        }
    }
    for (i, name) in d.disable.iter().enumerate() {
        let before = scenarios.len();
        scenarios.retain(|s| &s.name != name);
        if scenarios.len() == before {
            return Err(Invalid::new(
                at(&here, &[Seg::Key("disable"), Seg::Index(i)]),
                format!("`{name}` is not one of Ward's scenarios"),
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, s) in d.scenarios.iter().enumerate() {
        let spec = scenario_spec(s, &at(&here, &[Seg::Key("scenarios"), Seg::Index(i)]))?;
        if !seen.insert(spec.name.clone()) {
            return Err(Invalid::new(
                at(&here, &[Seg::Key("scenarios"), Seg::Index(i), Seg::Key("name")]),
                format!("duplicate scenario `{}`", spec.name),
            ));
        }
        // A scenario named like a default replaces it.
        match scenarios.iter_mut().find(|x| x.name == spec.name) {
            Some(existing) => *existing = spec,
            None => scenarios.push(spec),
        }
    }
    let anomaly = match &d.anomaly {
        None => Some(AnomalySpec::default()),
        Some(a) if a.enabled == Some(false) => None,
        Some(a) => Some(anomaly(a, &at(&here, &[Seg::Key("anomaly")]))?),
    };
    Ok(DetectConfig {
        settings: DetectSettings {
            engine: EngineSpec { scenarios, anomaly, privilege, max_keys: 1_000_000 },
            allowlist,
            escalation,
            state_file: Some(resolve(base, d.state_file.as_deref().unwrap_or("detect.json"))),
        },
        admin_routes: d.admin_routes.clone(),
    })
}

fn anomaly(a: &raw::RawAnomaly, here: &[Seg]) -> V<AnomalySpec> {
    let key = |k: &'static str| at(here, &[Seg::Key(k)]);
    let d = AnomalySpec::default();
    let alpha = a.alpha.unwrap_or(d.alpha);
    if !(alpha > 0.0 && alpha <= 1.0) {
        return Err(Invalid::new(key("alpha"), "a weight in (0, 1]"));
    }
    let z = a.z.unwrap_or(d.z);
    if !(z.is_finite() && z > 0.0) {
        return Err(Invalid::new(key("z"), "a positive number of standard deviations"));
    }
    let min_ratio = a.min_ratio.unwrap_or(d.min_ratio);
    if !(min_ratio.is_finite() && min_ratio >= 1.0) {
        return Err(Invalid::new(key("min_ratio"), "a multiple of the mean, at least 1"));
    }
    let window = duration(a.window.as_deref(), d.window, key("window"))?;
    if window < Duration::from_secs(1) {
        return Err(Invalid::new(key("window"), "at least 1s"));
    }
    Ok(AnomalySpec {
        window,
        alpha,
        warmup: a.warmup.unwrap_or(d.warmup),
        z,
        min_count: a.min_count.unwrap_or(d.min_count),
        min_ratio,
        cooldown: duration(a.cooldown.as_deref(), d.cooldown, key("cooldown"))?,
    })
}

fn scenario_spec(s: &raw::RawScenario, here: &[Seg]) -> V<ScenarioSpec> {
    let key = |k: &'static str| at(here, &[Seg::Key(k)]);
    if !name_ok(&s.name) {
        return Err(Invalid::new(key("name"), "1-64 of letters, digits, `-`, `_`, `.` and `/`"));
    }
    let mut reasons = Vec::with_capacity(s.reasons.len());
    for (i, r) in s.reasons.iter().enumerate() {
        let code = ReasonCode::from_name(r).ok_or_else(|| {
            Invalid::new(at(here, &[Seg::Key("reasons"), Seg::Index(i)]), format!("`{r}` is not a reason code"))
        })?;
        reasons.push(code);
    }
    if reasons.is_empty() && s.statuses.is_empty() {
        return Err(Invalid::new(key("reasons"), "give reasons, statuses or both: which events feed the scenario"));
    }
    let leak = duration(Some(&s.leak), Duration::ZERO, key("leak"))?;
    if leak.is_zero() {
        return Err(Invalid::new(key("leak"), "must be greater than 0"));
    }
    let duration = duration(s.duration.as_deref(), Duration::from_secs(900), key("duration"))?;
    if duration.is_zero() {
        return Err(Invalid::new(key("duration"), "must be greater than 0"));
    }
    Ok(ScenarioSpec {
        name: s.name.clone(),
        reasons,
        statuses: s.statuses.clone(),
        source: s
            .source
            .as_deref()
            .map(|v| choice(Some(v), Source::Gateway, &Source::NAMES, key("source")))
            .transpose()?,
        key: choice(Some(&s.key), Key::Ip, &Key::NAMES, key("key"))?,
        distinct: s
            .distinct
            .as_deref()
            .map(|v| choice(Some(v), Distinct::Path, &Distinct::NAMES, key("distinct")))
            .transpose()?,
        capacity: s.capacity,
        leak,
        severity: choice(Some(&s.severity), Severity::High, &Severity::NAMES, key("severity"))?,
        action: choice(s.action.as_deref(), Action::Alert, &Action::NAMES, key("action"))?,
        duration,
    })
}
