//! Building the authenticator from configuration: key files, JWK set files
//! and HTTPS JWK set URLs, with their refresh tasks.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use ward_authn::{Authenticator, JwksSource, KeyStore, Provider, SourceError, TokenCache, VerifyingKey};
use ward_config::{Config, ProviderConfig};
use ward_crypto::SecretBytes;

use crate::GatewayError;

/// Largest JWK set accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// A JWK set read from a local file.
#[derive(Debug)]
pub struct FileSource(pub PathBuf);

impl JwksSource for FileSource {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, SourceError>> + Send + '_>> {
        Box::pin(async move {
            let bytes =
                tokio::fs::read(&self.0).await.map_err(|e| SourceError(format!("{}: {e}", self.0.display())))?;
            if bytes.len() > MAX_JWKS_BYTES {
                return Err(SourceError(format!("{}: larger than 1 MiB", self.0.display())));
            }
            Ok(bytes)
        })
    }
}

/// A JWK set fetched over HTTPS (never plain HTTP), with a 10 s timeout and a 1 MiB cap.
#[derive(Debug)]
pub struct HttpsSource {
    url: http::Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl HttpsSource {
    /// A source for `url`, trusting `ca_file` or the system roots.
    ///
    /// # Errors
    /// [`GatewayError`] for a bad URL or CA file.
    pub fn new(url: &str, ca_file: Option<&std::path::Path>) -> Result<Self, GatewayError> {
        let url: http::Uri = url.parse().map_err(|_| GatewayError::Config(format!("bad JWKS URL `{url}`")))?;
        let tls = crate::upstream::client_tls(ca_file)?;
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
        Ok(Self { url, client: Client::builder(TokioExecutor::new()).build(connector) })
    }
}

impl JwksSource for HttpsSource {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, SourceError>> + Send + '_>> {
        Box::pin(async move {
            let fail = |what: String| SourceError(format!("{}: {what}", self.url));
            let request = http::Request::get(self.url.clone())
                .header(http::header::ACCEPT, "application/json")
                .body(Empty::new())
                .map_err(|e| fail(e.to_string()))?;
            let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
                .await
                .map_err(|_| fail("timed out".into()))?
                .map_err(|e| fail(e.to_string()))?;
            if response.status() != http::StatusCode::OK {
                return Err(fail(format!("status {}", response.status())));
            }
            let body = tokio::time::timeout(
                Duration::from_secs(10),
                Limited::new(response.into_body(), MAX_JWKS_BYTES).collect(),
            )
            .await
            .map_err(|_| fail("timed out".into()))?
            .map_err(|e| fail(e.to_string()))?;
            Ok(body.to_bytes().to_vec())
        })
    }
}

fn configured_keys(p: &ProviderConfig) -> Result<Vec<(Option<String>, VerifyingKey)>, GatewayError> {
    let mut keys = Vec::with_capacity(p.keys.len());
    for k in &p.keys {
        let key = match (&k.public_key_file, &k.secret_file) {
            (Some(file), _) => {
                let der = SubjectPublicKeyInfoDer::from_pem_file(file)
                    .map_err(|e| GatewayError::Keys(format!("{}: not a PEM public key: {e}", file.display())))?;
                VerifyingKey::from_public_der(k.alg, der.as_ref())
                    .map_err(|e| GatewayError::Keys(format!("{}: {e}", file.display())))?
            }
            (None, Some(file)) => {
                crate::tls::warn_if_readable_by_others(file);
                let secret = SecretBytes::new(
                    std::fs::read(file).map_err(|e| GatewayError::Keys(format!("{}: {e}", file.display())))?,
                );
                VerifyingKey::from_secret(k.alg, &secret)
                    .map_err(|e| GatewayError::Keys(format!("{}: {e}", file.display())))?
            }
            (None, None) => {
                return Err(GatewayError::Keys(format!("provider `{}`: a key has no file", p.settings.name)));
            }
        };
        keys.push((k.kid.clone(), key));
    }
    Ok(keys)
}

/// Build the authenticator: load every configured key, fetch every JWK set
/// A token provider whose keys come from elsewhere in the process — the
/// control plane of `ward up` — rather than from a `[[providers]]` entry.
#[derive(Debug)]
pub struct EmbeddedProvider {
    /// Its issuer, audiences and limits.
    pub settings: ward_authn::ProviderSettings,
    /// Where its JWK set comes from.
    pub source: Arc<dyn JwksSource>,
    /// How often the set is fetched again (and the least time between two
    /// fetches for an unknown `kid`).
    pub refresh_interval: std::time::Duration,
}

/// once (a JWK set *file* that cannot be read is a start-up error; an
/// unreachable URL is logged and retried), and start the refresh tasks.
///
/// # Errors
/// [`GatewayError::Keys`] for unusable key material.
pub async fn authenticator(
    config: &Config,
    embedded: Vec<EmbeddedProvider>,
) -> Result<Arc<Authenticator>, GatewayError> {
    let mut providers = Vec::with_capacity(config.providers.len() + embedded.len());
    let mut refresh = Vec::new();
    for p in &config.providers {
        let keys = configured_keys(p)?;
        let (store, periodic) = match (&p.jwks_file, &p.jwks_url) {
            (Some(file), _) => {
                let store =
                    KeyStore::with_source(keys, Arc::new(FileSource(file.clone())), p.jwks_min_refresh_interval);
                store
                    .refresh()
                    .await
                    .map_err(|e| GatewayError::Keys(format!("provider `{}`: {e}", p.settings.name)))?;
                (store, true)
            }
            (None, Some(url)) => {
                let source = HttpsSource::new(url, p.jwks_ca_file.as_deref())?;
                let store = KeyStore::with_source(keys, Arc::new(source), p.jwks_min_refresh_interval);
                if let Err(e) = store.refresh().await {
                    tracing::warn!(provider = %p.settings.name, error = %e, "JWK set not reachable yet; tokens are refused until it is");
                }
                (store, true)
            }
            (None, None) => (KeyStore::fixed(keys), false),
        };
        if periodic {
            refresh.push((providers.len(), p.jwks_refresh_interval));
        }
        providers.push(Provider::new(p.settings.clone(), store));
    }
    for e in embedded {
        // Nothing is fetched yet: the source's owner starts after the gateway
        // is bound and then calls `Gateway::refresh_provider`.
        refresh.push((providers.len(), e.refresh_interval));
        providers.push(Provider::new(e.settings, KeyStore::with_source(Vec::new(), e.source, e.refresh_interval)));
    }
    let cache = (config.cache_entries > 0).then(|| TokenCache::new(config.cache_entries));
    let auth = Arc::new(Authenticator::new(providers, cache));
    for (index, every) in refresh {
        let weak = Arc::downgrade(&auth);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(auth) = weak.upgrade() else { return };
                if let Some(p) = auth.providers().get(index)
                    && let Err(e) = p.keys().refresh().await
                {
                    tracing::warn!(provider = %p.settings().name, error = %e, "scheduled JWK set refresh failed; keeping the previous keys");
                }
            }
        });
    }
    Ok(auth)
}
