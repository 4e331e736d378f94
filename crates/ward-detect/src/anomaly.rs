//! Each principal's request rate against its own baseline.
//!
//! Requests are counted per window (default one minute). When a window
//! closes its count updates an exponentially weighted mean and variance
//! (West's incremental form: `d = x − μ; μ += α·d; σ² = (1 − α)(σ² + α·d²)`).
//! Once a principal has `warmup` windows of history, a window whose count
//! passes `μ + z·σ` (σ at least √μ, the Poisson spread, and at least 1),
//! `min_ratio · μ` and `min_count` raises one MEDIUM alert, at most once per
//! `cooldown`. The ratio keeps a principal whose rate is usually very
//! steady from alerting when it merely doubles or triples (a user's burst
//! of activity); an attack driven through a stolen credential is an order
//! of magnitude above its owner's habits.
//! Windows in which the principal sent nothing are not counted: the
//! baseline is the principal's rate while it is active, so a service that
//! sleeps at night does not look like an attacker every morning. A
//! window's count is clamped to the threshold before it joins the
//! baseline, so an attack does not teach the baseline to accept itself.

use std::time::Duration;

/// Anomaly detection settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnomalySpec {
    /// Counting window.
    pub window: Duration,
    /// EWMA weight of a new window (0 < α ≤ 1).
    pub alpha: f64,
    /// Windows of history before a principal can be judged.
    pub warmup: u32,
    /// Standard deviations above the mean that make a window anomalous.
    pub z: f64,
    /// Fewest requests in a window that can be anomalous.
    pub min_count: u32,
    /// A window must also exceed this multiple of the mean.
    pub min_ratio: f64,
    /// Least time between two alerts for one principal.
    pub cooldown: Duration,
}

impl Default for AnomalySpec {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            alpha: 0.05,
            warmup: 30,
            z: 6.0,
            min_count: 60,
            min_ratio: 4.0,
            cooldown: Duration::from_secs(3600),
        }
    }
}

/// One principal's baseline.
#[derive(Debug, Clone, Default)]
pub(crate) struct Baseline {
    window_start: u64,
    count: u32,
    mean: f64,
    var: f64,
    windows: u32,
    quiet_until: u64,
    /// The last time the principal was seen (ms), for pruning.
    pub last_seen: u64,
}

/// What one request did to a baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Observed {
    /// Nothing to report.
    Normal,
    /// This request made its window anomalous: the count and the threshold it passed.
    Anomalous { count: u32, threshold: f64 },
}

impl AnomalySpec {
    fn threshold(&self, b: &Baseline) -> f64 {
        let spread = b.var.sqrt().max(b.mean.sqrt()).max(1.0);
        (b.mean + self.z * spread).max(self.min_ratio * b.mean).max(f64::from(self.min_count))
    }

    /// Count one request at `now` (ms).
    pub(crate) fn observe(&self, b: &mut Baseline, now: u64) -> Observed {
        let window = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX).max(1);
        if b.last_seen == 0 {
            b.window_start = now;
        } else if now.saturating_sub(b.window_start) >= window {
            self.close_window(b);
            // Windows without requests are skipped (see the module docs).
            b.window_start = now - (now - b.window_start) % window;
        }
        b.last_seen = now;
        b.count = b.count.saturating_add(1);
        if b.windows < self.warmup || now < b.quiet_until {
            return Observed::Normal;
        }
        let threshold = self.threshold(b);
        if f64::from(b.count) > threshold {
            b.quiet_until = now.saturating_add(u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX));
            return Observed::Anomalous { count: b.count, threshold };
        }
        Observed::Normal
    }

    fn close_window(&self, b: &mut Baseline) {
        let mut x = f64::from(b.count);
        if b.windows >= self.warmup {
            x = x.min(self.threshold(b));
        }
        if b.windows == 0 {
            b.mean = x;
            b.var = 0.0;
        } else {
            let d = x - b.mean;
            b.mean += self.alpha * d;
            b.var = (1.0 - self.alpha) * (b.var + self.alpha * d * d);
        }
        b.windows = b.windows.saturating_add(1);
        b.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn run(spec: &AnomalySpec, b: &mut Baseline, start: u64, per_minute: u32) -> Vec<Observed> {
        let mut out = Vec::new();
        for i in 0..per_minute {
            let t = start + u64::from(i) * (MIN / u64::from(per_minute.max(1)));
            let o = spec.observe(b, t);
            if o != Observed::Normal {
                out.push(o);
            }
        }
        out
    }

    #[test]
    fn a_steady_principal_is_normal_and_a_surge_is_not() {
        let spec = AnomalySpec::default();
        let mut b = Baseline::default();
        for m in 0..60 {
            assert!(run(&spec, &mut b, 1 + m * MIN, 20 + (m % 7) as u32 * 2).is_empty(), "minute {m}");
        }
        // Ten times the usual rate.
        let alerts = run(&spec, &mut b, 1 + 60 * MIN, 250);
        assert_eq!(alerts.len(), 1, "one alert per cooldown: {alerts:?}");
        assert!(matches!(alerts[0], Observed::Anomalous { count, threshold } if f64::from(count) > threshold));
    }

    #[test]
    fn nothing_is_judged_during_warmup() {
        let spec = AnomalySpec::default();
        let mut b = Baseline::default();
        assert!(run(&spec, &mut b, 1, 5).is_empty());
        assert!(run(&spec, &mut b, 1 + MIN, 5_000).is_empty(), "a new principal has no baseline yet");
    }

    #[test]
    fn idle_windows_do_not_drag_the_baseline_down() {
        let spec = AnomalySpec::default();
        let mut b = Baseline::default();
        for m in 0..40 {
            run(&spec, &mut b, 1 + m * MIN, 100);
        }
        // Eight hours of silence, then the usual rate again.
        assert!(run(&spec, &mut b, 1 + (40 + 480) * MIN, 100).is_empty());
    }
}
