//! The keys of one provider: configured keys plus a JWK set that is fetched,
//! cached, refreshed at most once per interval (single flight), and served
//! stale when a fetch fails.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::jwk::JwkSet;
use crate::jws::VerifyingKey;

/// Why fetching a JWK set failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// Where a provider's JWK set comes from (a file, an HTTPS URL). Implemented
/// by the I/O shell; the store only decides *when* to fetch.
pub trait JwksSource: Send + Sync + fmt::Debug {
    /// Fetch the current JWK set document.
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, SourceError>> + Send + '_>>;
}

/// An immutable snapshot of a provider's keys.
#[derive(Debug, Default)]
pub struct KeySet {
    generation: u64,
    keys: Vec<(Option<String>, VerifyingKey)>,
}

impl KeySet {
    /// The snapshot's generation; it grows with every successful refresh, so
    /// cached verifications from an older generation are not trusted.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key a token's header selects: the one with that `kid`, or, for a
    /// header without `kid`, the only key of the set. `None` when no single
    /// key is selected (which may mean the set is out of date).
    #[must_use]
    pub fn select(&self, kid: Option<&str>) -> Option<&VerifyingKey> {
        match kid {
            Some(kid) => self.keys.iter().find(|(k, _)| k.as_deref() == Some(kid)).map(|(_, key)| key),
            None => match self.keys.as_slice() {
                [(_, only)] => Some(only),
                _ => None,
            },
        }
    }
}

/// Keys of one provider.
#[derive(Debug)]
pub struct KeyStore {
    current: ArcSwap<KeySet>,
    configured: Vec<(Option<String>, VerifyingKey)>,
    source: Option<Arc<dyn JwksSource>>,
    min_refresh_interval: Duration,
    // Single flight: refreshers queue on this lock. It holds the time of the
    // last fetch caused by an unknown `kid` (which a client controls), so those
    // are rate limited even when they fail; scheduled refreshes are not.
    refresh: tokio::sync::Mutex<Option<Instant>>,
    /// SHA-256 (hex) of the JWK set in service, and who to tell when it changes.
    fetched: std::sync::Mutex<Option<String>>,
    observer: std::sync::OnceLock<Observer>,
}

struct Observer(KeyObserver);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

/// Called with the new JWK set's SHA-256 (hex) and its key ids whenever a
/// fetch puts a different set in service (the audit log records it).
pub type KeyObserver = Arc<dyn Fn(&str, &[String]) + Send + Sync>;

impl KeyStore {
    /// A store of configured keys only (PEM files, secrets); it never refreshes.
    #[must_use]
    pub fn fixed(keys: Vec<(Option<String>, VerifyingKey)>) -> Self {
        Self::build(keys, None, Duration::MAX)
    }

    /// A store that also takes keys from `source`. Nothing is fetched until
    /// [`refresh`](Self::refresh) is called.
    #[must_use]
    pub fn with_source(
        configured: Vec<(Option<String>, VerifyingKey)>,
        source: Arc<dyn JwksSource>,
        min_refresh_interval: Duration,
    ) -> Self {
        Self::build(configured, Some(source), min_refresh_interval)
    }

    fn build(
        configured: Vec<(Option<String>, VerifyingKey)>,
        source: Option<Arc<dyn JwksSource>>,
        min_refresh_interval: Duration,
    ) -> Self {
        let initial = KeySet { generation: 0, keys: configured.clone() };
        Self {
            current: ArcSwap::from_pointee(initial),
            configured,
            source,
            min_refresh_interval,
            refresh: tokio::sync::Mutex::new(None),
            fetched: std::sync::Mutex::new(None),
            observer: std::sync::OnceLock::new(),
        }
    }

    /// Be told about every change of the fetched JWK set (set once).
    pub fn set_observer(&self, observer: KeyObserver) {
        let _ = self.observer.set(Observer(observer));
    }

    /// SHA-256 (hex) of the fetched JWK set in service, if one was fetched.
    #[must_use]
    pub fn fetched_digest(&self) -> Option<String> {
        self.fetched.lock().ok().and_then(|f| f.clone())
    }

    /// The current keys (lock-free).
    #[must_use]
    pub fn snapshot(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// Fetch the JWK set now, regardless of the rate limit (start-up and the
    /// periodic refresh). On failure the previous keys stay in service.
    ///
    /// # Errors
    /// The fetch or parse error; the store is unchanged.
    pub async fn refresh(&self) -> Result<(), SourceError> {
        let _guard = self.refresh.lock().await;
        self.fetch_and_swap().await
    }

    /// Called when a token names a key the snapshot of `seen_generation` does
    /// not hold. Refreshes at most once per minimum interval, with concurrent
    /// callers sharing one fetch. Returns whether newer keys are now in
    /// service (so the token is worth checking again).
    pub async fn refresh_for_unknown_key(&self, seen_generation: u64) -> bool {
        let Some(_) = &self.source else { return false };
        let mut last = self.refresh.lock().await;
        if self.current.load().generation != seen_generation {
            return true; // another caller refreshed while we waited
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refresh_interval) {
            return false;
        }
        *last = Some(Instant::now());
        match self.fetch_and_swap().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "JWK set refresh failed; serving the previous keys");
                false
            }
        }
    }

    async fn fetch_and_swap(&self) -> Result<(), SourceError> {
        let Some(source) = &self.source else { return Ok(()) };
        let bytes = source.fetch().await?;
        let set = JwkSet::parse(&bytes).map_err(|e| SourceError(e.to_string()))?;
        let fetched = set.verifying_keys().map_err(|e| SourceError(e.to_string()))?;
        let kids: Vec<String> = fetched.iter().map(|(kid, _)| kid.clone().unwrap_or_else(|| "-".into())).collect();
        let mut keys = self.configured.clone();
        keys.extend(fetched);
        let generation = self.current.load().generation + 1;
        self.current.store(Arc::new(KeySet { generation, keys }));
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
        let digest: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let changed = self.fetched.lock().map(|mut f| f.replace(digest.clone()).as_deref() != Some(digest.as_str()));
        if changed.unwrap_or(false)
            && let Some(observer) = self.observer.get()
        {
            (observer.0)(&digest, &kids);
        }
        Ok(())
    }
}
