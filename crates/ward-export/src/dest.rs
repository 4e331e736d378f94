//! Where exported events go: a JSON-lines file, a syslog collector over
//! TLS, an HTTPS webhook. Each `send` either delivers the whole batch or
//! fails; the exporter retries a failed batch until it goes through.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::ExportError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Records re-sent to a syslog collector after its connection drops.
const SYSLOG_RESEND_WINDOW: u64 = 4096;

/// A rustls client configuration trusting `ca_file` only (no system roots:
/// a SIEM endpoint is a known party; name its CA).
///
/// # Errors
/// [`ExportError::Config`] when the file holds no usable certificate.
pub fn client_tls(ca_file: &Path) -> Result<rustls::ClientConfig, ExportError> {
    let certs = CertificateDer::pem_file_iter(ca_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ExportError::Config(format!("{}: {e}", ca_file.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    if roots.add_parsable_certificates(certs).0 == 0 {
        return Err(ExportError::Config(format!("{}: no usable CA certificate", ca_file.display())));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| ExportError::Config(e.to_string()))
}

/// JSON lines appended to a file (0600), synced before the batch counts as delivered.
#[derive(Debug)]
pub struct FileDest {
    path: PathBuf,
    file: Option<File>,
}

impl FileDest {
    /// A file destination (opened on first use).
    #[must_use]
    pub fn new(path: &Path) -> Self {
        Self { path: path.to_owned(), file: None }
    }

    fn send(&mut self, lines: &[String]) -> Result<(), ExportError> {
        let io = |e: std::io::Error| ExportError::Delivery(format!("{}: {e}", self.path.display()));
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            self.file = Some(OpenOptions::new().create(true).append(true).mode(0o600).open(&self.path).map_err(io)?);
        }
        let Some(file) = self.file.as_mut() else { return Ok(()) };
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
        }
        let written = file.write_all(&buf).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Reopen next time: a rotated or replaced file starts fresh.
            self.file = None;
            return Err(io(e));
        }
        Ok(())
    }
}

/// RFC 5424 messages over TLS (RFC 5425), one connection kept open.
pub struct SyslogDest {
    address: String,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    stream: Option<TlsStream<TcpStream>>,
}

impl std::fmt::Debug for SyslogDest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogDest").field("address", &self.address).field("connected", &self.stream.is_some()).finish()
    }
}

impl SyslogDest {
    /// A collector at `address` (`host:port`), verified as `server_name` against `ca_file`.
    ///
    /// # Errors
    /// [`ExportError::Config`] for a bad name or CA file.
    pub fn new(address: &str, server_name: &str, ca_file: &Path) -> Result<Self, ExportError> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| ExportError::Config(format!("`{server_name}` is not a server name")))?;
        Ok(Self {
            address: address.to_owned(),
            server_name: name,
            tls: TlsConnector::from(Arc::new(client_tls(ca_file)?)),
            stream: None,
        })
    }

    /// A collector that closed the connection (EOF or an error on a read
    /// that would otherwise block) may have dropped what it had not read.
    async fn connection_lost(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let Some(stream) = self.stream.as_mut() else { return false };
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await {
            // Nothing to read: still open. (Collectors do not talk back.)
            Err(_) | Ok(Ok(1..)) => false,
            Ok(Ok(0) | Err(_)) => {
                self.stream = None;
                true
            }
        }
    }

    async fn send(&mut self, frames: &[Vec<u8>]) -> Result<(), ExportError> {
        if self.stream.is_none() {
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
                .await
                .map_err(|_| ExportError::Delivery(format!("{}: connect timed out", self.address)))?
                .map_err(|e| ExportError::Delivery(format!("{}: {e}", self.address)))?;
            let _ = tcp.set_nodelay(true);
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, self.tls.connect(self.server_name.clone(), tcp))
                .await
                .map_err(|_| ExportError::Delivery(format!("{}: TLS handshake timed out", self.address)))?
                .map_err(|e| ExportError::Delivery(format!("{}: TLS: {e}", self.address)))?;
            self.stream = Some(tls);
        }
        let Some(stream) = self.stream.as_mut() else { return Ok(()) };
        let mut buf = Vec::with_capacity(frames.iter().map(Vec::len).sum());
        for f in frames {
            buf.extend_from_slice(f);
        }
        let sent = tokio::time::timeout(SEND_TIMEOUT, async {
            stream.write_all(&buf).await?;
            stream.flush().await
        })
        .await;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.stream = None;
                Err(ExportError::Delivery(format!("{}: {e}", self.address)))
            }
            Err(_) => {
                self.stream = None;
                Err(ExportError::Delivery(format!("{}: write timed out", self.address)))
            }
        }
    }
}

/// Batches POSTed as a JSON array to an HTTPS endpoint; any 2xx acknowledges.
#[derive(Debug)]
pub struct WebhookDest {
    url: http::Uri,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    authorization: Option<http::HeaderValue>,
}

impl WebhookDest {
    /// POST to `url` (https only), trusting `ca_file`; `token_file` holds a
    /// bearer token (read once, never logged).
    ///
    /// # Errors
    /// [`ExportError::Config`] for a bad URL, CA or token file.
    pub fn new(url: &str, ca_file: &Path, token_file: Option<&Path>) -> Result<Self, ExportError> {
        let uri: http::Uri = url.parse().map_err(|_| ExportError::Config(format!("`{url}` is not a URL")))?;
        if uri.scheme_str() != Some("https") {
            return Err(ExportError::Config(format!("`{url}`: webhooks must use https")));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_tls(ca_file)?)
            .https_only()
            .enable_http1()
            .build();
        let authorization = match token_file {
            None => None,
            Some(p) => {
                let token = zeroize::Zeroizing::new(
                    std::fs::read_to_string(p).map_err(|e| ExportError::Config(format!("{}: {e}", p.display())))?,
                );
                let mut v = http::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                    .map_err(|_| ExportError::Config(format!("{}: not a usable token", p.display())))?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        Ok(Self { url: uri, client: Client::builder(TokioExecutor::new()).build(connector), authorization })
    }

    async fn send(&mut self, body: String) -> Result<(), ExportError> {
        let mut req = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ExportError::Delivery(e.to_string()))?;
        if let Some(a) = &self.authorization {
            req.headers_mut().insert(http::header::AUTHORIZATION, a.clone());
        }
        let shown = format!("{}{}", self.url.authority().map_or("", |a| a.as_str()), self.url.path());
        let response = tokio::time::timeout(SEND_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| ExportError::Delivery(format!("{shown}: timed out")))?
            .map_err(|e| ExportError::Delivery(format!("{shown}: {e}")))?;
        let status = response.status();
        // Drain the body so the connection can be reused.
        let _ = tokio::time::timeout(SEND_TIMEOUT, response.into_body().collect()).await;
        if status.is_success() { Ok(()) } else { Err(ExportError::Delivery(format!("{shown}: HTTP {status}"))) }
    }
}

/// One of the three destinations.
#[derive(Debug)]
pub enum Destination {
    /// JSON lines to a file.
    File(FileDest),
    /// Syslog over TLS (boxed, as the webhook: both are large and built once).
    Syslog(Box<SyslogDest>),
    /// HTTPS webhook.
    Webhook(Box<WebhookDest>),
}

impl Destination {
    /// How many records stay unconfirmed after a successful send: zero for
    /// destinations that acknowledge (a synced file, a 2xx answer); for
    /// syslog, which has no acknowledgement, the records a dropped
    /// connection may have swallowed.
    #[must_use]
    pub fn resend_window(&self) -> u64 {
        match self {
            Self::Syslog(_) => SYSLOG_RESEND_WINDOW,
            Self::File(_) | Self::Webhook(_) => 0,
        }
    }

    /// Whether the destination's connection was closed by the other side
    /// since the last send (checked without blocking).
    pub async fn connection_lost(&mut self) -> bool {
        match self {
            Self::Syslog(s) => s.connection_lost().await,
            Self::File(_) | Self::Webhook(_) => false,
        }
    }

    /// Deliver a batch of rendered events (one per record).
    ///
    /// # Errors
    /// [`ExportError::Delivery`]; nothing of the batch counts as delivered.
    pub async fn send(&mut self, events: &[crate::Rendered]) -> Result<(), ExportError> {
        match self {
            Self::File(f) => f.send(&events.iter().map(|e| e.line.clone()).collect::<Vec<_>>()),
            Self::Syslog(s) => {
                s.send(&events.iter().map(|e| crate::syslog::frame(&e.syslog)).collect::<Vec<_>>()).await
            }
            Self::Webhook(w) => {
                let items: Vec<&str> = events.iter().map(|e| e.line.as_str()).collect();
                w.send(format!("[{}]", items.join(","))).await
            }
        }
    }
}
