//! Getting this log's checkpoints cosigned: the HTTPS transport to a C2SP
//! `tlog-witness` on another machine (`[[audit.witnesses]]`), and the one
//! task per log that submits every new checkpoint to all of its witnesses
//! (remote ones and, in `ward up`, the control plane's witness in process).
//!
//! One task per log matters: the cosignatures of every witness are gathered
//! in one `cosigned` file, which two writers would overwrite in turn.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ward_audit::witness_client::{Answer, Configured, Transport};
use ward_audit::{AuditSink, LogSink};

use crate::GatewayError;

/// How long one submission may take, connection included.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping log waits for its witnesses to cosign its final checkpoint.
pub const FINAL_ROUND: Duration = Duration::from_secs(5);
/// The largest answer read from a witness (cosignature lines are ~100 bytes each).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A witness reached over HTTPS: `POST <prefix>/add-checkpoint`.
#[derive(Debug)]
pub struct HttpWitness {
    url: http::Uri,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpWitness {
    /// A witness at the URL prefix `url` (https only), whose certificate
    /// must chain to `ca_file` (no system roots).
    ///
    /// # Errors
    /// [`GatewayError::Config`] for a URL that is not https or a CA file
    /// without a usable certificate.
    pub fn new(url: &str, ca_file: &Path) -> Result<Self, GatewayError> {
        let prefix = url.trim_end_matches('/');
        let uri: http::Uri = format!("{prefix}/add-checkpoint")
            .parse()
            .map_err(|_| GatewayError::Config(format!("witness `{url}` is not a URL")))?;
        if uri.scheme_str() != Some("https") || uri.authority().is_none() {
            return Err(GatewayError::Config(format!("witness `{url}`: must be an https URL")));
        }
        let tls = ward_export::dest::client_tls(ca_file).map_err(|e| GatewayError::Config(e.to_string()))?;
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
        Ok(Self { url: uri, client: Client::builder(TokioExecutor::new()).build(connector) })
    }

    async fn submit(&self, body: String) -> Answer {
        let req = match http::Request::post(self.url.clone()).body(Full::new(Bytes::from(body))) {
            Ok(r) => r,
            Err(e) => return Answer::Unreachable(e.to_string()),
        };
        let exchange = async {
            let response = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = match tokio::time::timeout(SUBMIT_TIMEOUT, exchange).await {
            Err(_) => return Answer::Unreachable("timed out".into()),
            Ok(Err(e)) => return Answer::Unreachable(e),
            Ok(Ok(answer)) => answer,
        };
        answer(status.as_u16(), &body)
    }
}

/// What a witness's HTTP answer means: 200 carries cosignature lines, 409
/// the size it holds (`text/x.tlog.size`: one decimal number). A 409 whose
/// body is not a size is only a refusal — never a divergence alarm.
fn answer(status: u16, body: &[u8]) -> Answer {
    match status {
        200 => match std::str::from_utf8(body) {
            Ok(lines) => Answer::Cosigned(lines.to_owned()),
            Err(_) => Answer::Refused(200),
        },
        409 => std::str::from_utf8(body)
            .ok()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == &"0" || !s.starts_with('0')))
            .and_then(|s| s.parse::<u64>().ok())
            .map_or(Answer::Refused(409), Answer::Conflict),
        other => Answer::Refused(other),
    }
}

impl Transport for HttpWitness {
    fn add_checkpoint(&self, body: String) -> Pin<Box<dyn Future<Output = Answer> + Send + '_>> {
        Box::pin(self.submit(body))
    }
}

/// The witnesses `[[audit.witnesses]]` names, ready to submit to.
///
/// # Errors
/// [`GatewayError::Config`] for a bad key, URL or CA file.
pub fn configured(witnesses: &[ward_config::AuditWitness]) -> Result<Vec<Configured>, GatewayError> {
    witnesses
        .iter()
        .map(|w| {
            let verifier = ward_merkle::CosignatureVerifier::new(&w.key)
                .map_err(|e| GatewayError::Config(format!("witness `{}`: {e}", w.url)))?;
            Ok(Configured { verifier, transport: Box::new(HttpWitness::new(&w.url, &w.ca_file)?) })
        })
        .collect()
}

/// A witness in this process (`ward up`'s control plane), as a [`Configured`].
///
/// # Errors
/// [`GatewayError::Config`] if the witness's own key does not parse.
pub fn local(witness: Arc<ward_audit::witness::Witness>) -> Result<Configured, GatewayError> {
    let verifier = ward_merkle::CosignatureVerifier::new(&witness.verifier_key())
        .map_err(|e| GatewayError::Config(format!("the local witness key: {e}")))?;
    Ok(Configured { verifier, transport: Box::new(ward_audit::witness_client::Local(witness)) })
}

/// Send every checkpoint of `log` to `witnesses` until `stop` turns true,
/// keeping their cosignatures in the log directory. A divergence — a
/// witness holds a checkpoint this log does not — is written to the log as
/// a CRITICAL `ward/witness-divergence` detection.
pub async fn witness_log(log: Arc<LogSink>, witnesses: Vec<Configured>, stop: tokio::sync::watch::Receiver<bool>) {
    if witnesses.is_empty() {
        return;
    }
    let dir = log.dir().to_owned();
    let (latest, sink) = (Arc::clone(&log), log);
    let alert = move |why: &str| {
        let mut record = ward_audit::AuditRecord::now(
            "detection",
            "ALERT",
            ward_core::ReasonCode::ThreatDetected,
            ward_core::Effect::Deny,
        );
        record.detection = Some(ward_audit::Detection {
            scenario: "ward/witness-divergence".into(),
            severity: "critical",
            action: "alert",
            target_kind: "log",
            target_hmac: String::new(),
            decision_id: None,
            until: None,
            offence: None,
            count: None,
            detail: Some(why.to_owned()),
        });
        if let Err(e) = sink.record(record) {
            tracing::error!(error = %e, "the witness divergence could not be audited");
        }
    };
    ward_audit::witness_client::run(dir, move || latest.latest_checkpoint(), witnesses, alert, stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_409_is_a_conflict_only_with_a_plain_size() {
        assert_eq!(answer(409, b"1234\n"), Answer::Conflict(1234));
        assert_eq!(answer(409, b"0"), Answer::Conflict(0));
        for body in [&b""[..], b"-1", b"+5", b"12 34", b"0x10", b"007", b"99999999999999999999999", b"conflict"] {
            assert_eq!(answer(409, body), Answer::Refused(409), "{body:?}");
        }
    }

    #[test]
    fn other_answers() {
        assert_eq!(answer(200, b"\xe2\x80\x94 w abc\n"), Answer::Cosigned("\u{2014} w abc\n".into()));
        assert_eq!(answer(200, b"\xff"), Answer::Refused(200));
        assert_eq!(answer(403, b""), Answer::Refused(403));
        assert_eq!(answer(422, b""), Answer::Refused(422));
    }

    #[test]
    fn only_https_urls() {
        let ca = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        for url in ["http://w.example/witness", "w.example/witness", "https:///witness"] {
            assert!(HttpWitness::new(url, ca.path()).is_err(), "{url}");
        }
    }
}
