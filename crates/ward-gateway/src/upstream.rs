//! Upstream connections: pooled HTTP/1.1 or HTTP/2 clients over plain TCP or
//! rustls, and the built-in echo service used by `ward up`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use ward_config::{UpstreamConfig, UpstreamTarget};

use crate::GatewayError;

/// The body sent upstream: the client's, capped at the body limit.
pub type UpstreamBody = Limited<Incoming>;

/// A client for one upstream.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, UpstreamBody>;

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
    /// The pooled client.
    pub client: UpstreamClient,
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
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout));
    let tls_config = client_tls(config.ca_file.as_deref())?;
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls_config).https_or_http();
    let connector = if config.http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    };
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(config.max_idle_per_host)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(config.http2)
        .build(connector);
    Ok(Upstream {
        name: Arc::from(config.name.as_str()),
        scheme: if tls { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP },
        authority: authority
            .parse()
            .map_err(|_| GatewayError::Config(format!("upstream `{}`: bad authority `{authority}`", config.name)))?,
        timeout: config.timeout,
        http2: config.http2,
        client,
    })
}

impl Upstream {
    /// The upstream URI for a normalised path and the original query.
    ///
    /// # Errors
    /// `http::Error` if the parts do not form a URI.
    pub fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        let pq = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        Uri::builder().scheme(self.scheme.clone()).authority(self.authority.clone()).path_and_query(pq).build()
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
