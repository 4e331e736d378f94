//! Intrusion prevention on the request path: address and principal
//! blocks, rate limits (GCRA), and the event
//! every decision hands to the detector.
//!
//! Order in the pipeline: address block (at accept, before TLS, and again
//! per request for keep-alive connections and clients behind trusted
//! proxies) → route → limits keyed by address, route or header → authenticate
//! → principal block → limits keyed by principal or claim → authorize.
//! Allowlisted clients skip every limit and are never blocked.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::Response;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use ward_config::{Config, RateKey};
use ward_core::{Identity, ReasonCode, RequestId};
use ward_detect::gcra::{Limiter, Verdict};
use ward_detect::{Detector, Event, Privileged, Source};

use crate::response::{self, Body};

/// Keys one limit holds at most before pruning (per limit).
const MAX_KEYS: usize = 1 << 20;

/// One configured rate limit.
#[derive(Debug)]
pub(crate) struct RateRule {
    name: String,
    key: RateKey,
    limiter: Arc<Limiter>,
    /// Only these routes; all when `None`.
    routes: Option<HashSet<String>>,
    shadow: bool,
    /// `RateLimit-Policy` value, rendered once.
    policy: HeaderValue,
}

/// One limit's verdict on a request: the one that refused it, or the
/// tightest of those that let it through (reported in `RateLimit`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limited<'a> {
    rule: &'a RateRule,
    verdict: Verdict,
}

/// Everything the request path needs to protect itself.
#[derive(Debug)]
pub(crate) struct Protection {
    pub detector: Option<Arc<Detector>>,
    rules: Vec<RateRule>,
    admin_routes: HashSet<String>,
    epoch: Instant,
}

fn policy_value(name: &str, gcra: &ward_detect::gcra::Gcra) -> HeaderValue {
    let q = gcra.quota();
    // RateLimit-Policy speaks in whole seconds: scale sub-second periods up.
    let period = q.period.as_secs_f64();
    let window = period.ceil().max(1.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (quota, window) = ((f64::from(q.rate) * window / period).round() as u64, window as u64);
    let text = format!("\"{name}\";q={quota};w={window}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("\"limit\""))
}

impl Protection {
    pub(crate) fn new(config: &Config, detector: Option<Arc<Detector>>) -> Self {
        let rules = config
            .rate_limits
            .iter()
            .map(|r| {
                let policy = policy_value(&r.name, &r.gcra);
                let limiter = Arc::new(Limiter::new(r.gcra, MAX_KEYS));
                if let Some(d) = &detector {
                    d.register_limit(&r.name, r.shadow, Arc::clone(&limiter));
                }
                RateRule {
                    name: r.name.clone(),
                    key: r.key.clone(),
                    limiter,
                    routes: (!r.routes.is_empty()).then(|| r.routes.iter().cloned().collect()),
                    shadow: r.shadow,
                    policy,
                }
            })
            .collect();
        Self {
            admin_routes: config.detect.as_ref().map(|d| d.admin_routes.iter().cloned().collect()).unwrap_or_default(),
            detector,
            rules,
            epoch: Instant::now(),
        }
    }

    pub(crate) fn ip_blocked(&self, ip: IpAddr) -> bool {
        self.detector.as_ref().is_some_and(|d| d.ip_blocked(ip))
    }

    pub(crate) fn principal_blocked(&self, identity: &Identity) -> bool {
        self.detector.as_ref().is_some_and(|d| d.principal_blocked_in(&identity.issuer, identity.principal.as_str()))
    }

    fn allowlisted(&self, ip: IpAddr, identity: Option<&Identity>) -> bool {
        self.detector.as_ref().is_some_and(|d| d.allowlisted(ip, identity.map(|i| i.principal.as_str())))
    }

    /// Apply the limits of one phase (`after_auth`: those keyed by
    /// principal or claim): `Err` with the first that refuses (shadow
    /// limits never do), else the tightest that applied, if any — `tightest`
    /// carries the previous phase's.
    pub(crate) fn limit<'a>(
        &'a self,
        after_auth: bool,
        (route, ip): (&str, IpAddr),
        identity: Option<&Identity>,
        headers: &HeaderMap,
        tightest: Option<Limited<'a>>,
    ) -> Result<Option<Limited<'a>>, Limited<'a>> {
        if self.rules.is_empty() || self.allowlisted(ip, identity) {
            return Ok(tightest);
        }
        let mut tightest = tightest;
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        for rule in &self.rules {
            if rule.key.needs_identity() != after_auth || rule.routes.as_ref().is_some_and(|r| !r.contains(route)) {
                continue;
            }
            let limiter = &rule.limiter;
            let key = match &rule.key {
                RateKey::Ip => limiter.key_of(&ward_core::net::canonical_ip(ip)),
                RateKey::Route => limiter.key_of(route),
                RateKey::Principal => match identity {
                    Some(i) => limiter.key_of(&(i.issuer.as_ref(), i.principal.as_str())),
                    None => continue,
                },
                RateKey::Claim(claim) => match identity.and_then(|i| i.claim(claim)) {
                    Some(serde_json::Value::String(s)) => limiter.key_of(s.as_str()),
                    Some(serde_json::Value::Null) | None => continue,
                    Some(other) => limiter.key_of(&other.to_string()),
                },
                RateKey::Header(name) => match headers.get(name.as_str()) {
                    Some(v) => limiter.key_of(v.as_bytes()),
                    None => continue,
                },
            };
            let verdict = limiter.check_hashed(key, now);
            if rule.shadow {
                if !verdict.allowed {
                    tracing::debug!(limit = %rule.name, "over the limit (shadow mode: served)");
                }
                continue;
            }
            if !verdict.allowed {
                return Err(Limited { rule, verdict });
            }
            if tightest.is_none_or(|t| verdict.remaining < t.verdict.remaining) {
                tightest = Some(Limited { rule, verdict });
            }
        }
        Ok(tightest)
    }

    /// Hand one decision to the detector; `principal` is (issuer, subject).
    pub(crate) fn observe(
        &self,
        reason: ReasonCode,
        status: u16,
        ip: IpAddr,
        path: &str,
        route: Option<&str>,
        principal: Option<(&str, &str)>,
    ) {
        let Some(d) = &self.detector else { return };
        let mut event = Event::new(Source::Gateway, reason, status, ip, path)
            .principal(principal.map(|(_, p)| p))
            .issuer(principal.map(|(iss, _)| iss));
        if status < 400 && route.is_some_and(|r| self.admin_routes.contains(r)) {
            event = event.privileged(Privileged::AdminUse);
        }
        d.observe(&event);
    }
}

fn secs_ceil(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000).max(1)
}

/// 429 with `Retry-After` and the `RateLimit-Policy` / `RateLimit` fields
/// (draft-ietf-httpapi-ratelimit-headers).
pub(crate) fn too_many(limited: &Limited<'_>, request_id: &RequestId) -> Response<Body> {
    let mut r = response::error(ReasonCode::RateLimited, request_id);
    let retry = secs_ceil(limited.verdict.retry_after);
    r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(retry));
    limited.add_fields(r.headers_mut());
    r
}

impl Limited<'_> {
    /// The limit's name (for the audit record).
    pub(crate) fn name(&self) -> &str {
        &self.rule.name
    }

    /// `RateLimit-Policy` and `RateLimit` (remaining requests, seconds
    /// until the quota is whole again), on refusals and allowed answers alike.
    pub(crate) fn add_fields(&self, h: &mut HeaderMap) {
        h.insert(HeaderName::from_static("ratelimit-policy"), self.rule.policy.clone());
        let (remaining, reset) = (self.verdict.remaining, secs_ceil(self.verdict.reset));
        if let Ok(v) = HeaderValue::from_str(&format!("\"{}\";r={remaining};t={reset}", self.rule.name)) {
            h.insert(HeaderName::from_static("ratelimit"), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_fields_speak_whole_seconds() {
        let g = |rate, ms| {
            ward_detect::gcra::Gcra::new(ward_detect::gcra::Quota {
                rate,
                period: std::time::Duration::from_millis(ms),
                burst: 1,
            })
            .unwrap()
        };
        assert_eq!(policy_value("a", &g(100, 1000)), "\"a\";q=100;w=1");
        assert_eq!(policy_value("b", &g(10, 100)), "\"b\";q=100;w=1");
        assert_eq!(policy_value("c", &g(30, 60_000)), "\"c\";q=30;w=60");
    }
}
