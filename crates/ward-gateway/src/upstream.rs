//! Upstreams: where requests go (pooled HTTP/1.1 or HTTP/2 over plain TCP
//! or rustls, see [`crate::pool`]), and the built-in echo service used by
//! `ward up`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use ward_config::{UpstreamConfig, UpstreamTarget};

use crate::GatewayError;
use crate::pool::{Pool, PooledBody, Target, UpstreamError};

/// The body sent upstream: the client's, capped at the body limit.
pub type UpstreamBody = Limited<http_body_util::Either<Incoming, http_body_util::Empty<bytes::Bytes>>>;

/// A configured upstream, ready to take requests.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Name from the configuration.
    pub name: Arc<str>,
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// `host:port`.
    pub authority: http::uri::Authority,
    /// Time allowed for response headers.
    pub timeout: Duration,
    /// Whether HTTP/2 is spoken to it.
    pub http2: bool,
    /// This worker's connections to it.
    pool: Arc<Pool>,
}

/// Build a rustls client configuration trusting `ca_file`, or the system roots.
///
/// # Errors
/// [`GatewayError::Tls`] if the CA file cannot be read or holds no certificate.
pub fn client_tls(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, GatewayError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| GatewayError::Tls(format!("{}: {e}", path.display())))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(GatewayError::Tls(format!("{}: no usable CA certificate", path.display())));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| GatewayError::Tls(e.to_string()))
}

/// A client configuration for an upstream with a SPIFFE identity: its
/// certificate must chain to the bundle and carry exactly the expected ID;
/// the gateway presents its own SVID if one is configured.
fn spiffe_client_tls(name: &str, s: &ward_config::UpstreamSpiffe) -> Result<rustls::ClientConfig, GatewayError> {
    let fail = |what: String| GatewayError::Tls(format!("upstream `{name}`: {what}"));
    let expected = ward_core::SpiffeId::parse(&s.expected).map_err(|e| fail(e.to_string()))?;
    // Bundle and SVID are re-read when they change (rotation).
    let verifier = crate::svid::ReloadingServerVerifier::new(s.bundle_file.clone(), expected).map_err(fail)?;
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    match &s.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            crate::tls::warn_if_readable_by_others(key);
            let resolver = crate::svid::ReloadingClientCert::new(cert.clone(), key.clone()).map_err(fail)?;
            Ok(builder.with_client_cert_resolver(Arc::new(resolver)))
        }
    }
}

/// A pooled client for `config`, whose echo target (if any) listens at `echo`.
///
/// # Errors
/// [`GatewayError`] for bad TLS material or a malformed authority.
pub fn build(config: &UpstreamConfig, echo: Option<SocketAddr>) -> Result<Upstream, GatewayError> {
    let (tls, authority) = match (&config.target, echo) {
        (UpstreamTarget::Url { tls, authority, .. }, _) => (*tls, authority.clone()),
        (UpstreamTarget::Echo, Some(addr)) => (false, addr.to_string()),
        (UpstreamTarget::Echo, None) => {
            return Err(GatewayError::Config(format!("upstream `{}`: the echo service is not running", config.name)));
        }
    };
    let authority: http::uri::Authority = authority
        .parse()
        .map_err(|_| GatewayError::Config(format!("upstream `{}`: bad authority `{authority}`", config.name)))?;
    let tls = if tls {
        let mut tls_config = match &config.spiffe {
            None => client_tls(config.ca_file.as_deref())?,
            Some(s) => spiffe_client_tls(&config.name, s)?,
        };
        tls_config.alpn_protocols = vec![if config.http2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
        let name = ServerName::try_from(authority.host().trim_start_matches('[').trim_end_matches(']').to_owned())
            .map_err(|_| {
                GatewayError::Config(format!(
                    "upstream `{}`: `{}` is not a TLS server name",
                    config.name,
                    authority.host()
                ))
            })?;
        Some((tokio_rustls::TlsConnector::from(Arc::new(tls_config)), name))
    } else {
        None
    };
    let scheme = if tls.is_some() { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP };
    let pool = Pool::new(Target {
        authority: authority.as_str().to_owned(),
        tls,
        http2: config.http2,
        connect_timeout: config.connect_timeout,
        max_idle: config.max_idle_per_host,
    });
    Ok(Upstream {
        name: Arc::from(config.name.as_str()),
        scheme,
        authority,
        timeout: config.timeout,
        http2: config.http2,
        pool,
    })
}

impl Upstream {
    /// The request target for a normalised path and the original query:
    /// origin-form for HTTP/1.1 (the `Host` header names the upstream),
    /// absolute for HTTP/2 (whose `:authority` comes from it).
    ///
    /// # Errors
    /// `http::Error` if the parts do not form a URI.
    pub fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        let pq = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        if self.http2 {
            Uri::builder().scheme(self.scheme.clone()).authority(self.authority.clone()).path_and_query(pq).build()
        } else {
            Uri::builder().path_and_query(pq).build()
        }
    }

    /// The `Host` header an HTTP/1.1 request to this upstream carries.
    #[must_use]
    pub fn host_header(&self) -> Option<http::HeaderValue> {
        http::HeaderValue::from_str(self.authority.as_str()).ok()
    }

    /// Send a request on this worker's pool.
    ///
    /// # Errors
    /// [`UpstreamError`] when no response head arrives.
    pub async fn send(&self, request: Request<UpstreamBody>) -> Result<Response<PooledBody>, UpstreamError> {
        self.pool.send(request).await
    }
}

/// Start the demo echo service on an ephemeral loopback port. It answers
/// every request with JSON describing what it received, including the
/// identity headers Ward added, so a first run shows the pipeline at work.
///
/// # Errors
/// The bind error.
pub async fn start_echo() -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(echo);
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(addr)
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-"))
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into()))
        .collect();
    let body = serde_json::json!({
        "message": "hello from Ward's demo upstream: this request was authenticated, authorized and audited",
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "principal": headers.get("x-ward-principal"),
        "headers": headers,
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    Ok(response)
}
