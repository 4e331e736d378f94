//! `ward agent`: keeps a workload's SVID fresh on disk for applications that
//! only read files.
//!
//! The first SVID comes from a one-time join token (`POST /svid/join`);
//! after that the agent renews with its current SVID over mTLS (`POST
//! /svid/renew`) at half its lifetime, give or take a tenth (jitter, so a
//! fleet started together does not renew together). Every renewal uses a
//! new key, made here: the private key never leaves the machine. Files are
//! replaced atomically (write, then rename); the key is 0600.
//!
//! ```text
//! <dir>/svid.key     the private key (0600)
//! <dir>/svid.crt     the SVID and its intermediate
//! <dir>/bundle.pem   the trust bundle
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

/// What the agent is told.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The control plane's base URL (`https://host:port`).
    pub control: String,
    /// The CA certificate the control plane's TLS certificate chains to.
    pub ca_file: PathBuf,
    /// Where the SVID lives.
    pub dir: PathBuf,
    /// A file holding a join token, for the first SVID.
    pub join_token_file: Option<PathBuf>,
    /// Requested SVID lifetime (seconds); the CA's default when absent.
    pub ttl: Option<u64>,
    /// Get or renew once, then exit.
    pub once: bool,
}

const KEY: &str = "svid.key";
const CERT: &str = "svid.crt";
const BUNDLE: &str = "bundle.pem";

fn client(opts: &AgentOptions, identity: Option<&[u8]>) -> Result<reqwest::Client, String> {
    let ca = std::fs::read(&opts.ca_file).map_err(|e| format!("{}: {e}", opts.ca_file.display()))?;
    let ca = reqwest::Certificate::from_pem(&ca).map_err(|e| format!("{}: {e}", opts.ca_file.display()))?;
    let mut builder = reqwest::Client::builder().tls_certs_only([ca]).timeout(Duration::from_secs(15));
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(pem).map_err(|e| format!("current SVID: {e}"))?);
    }
    builder.build().map_err(|e| e.to_string())
}

/// Ask for an SVID over a new key; write it. Returns when it was obtained
/// and when it expires (unix seconds): the lifetime counts from now, not
/// from `notBefore`, which the CA backdates for clock skew.
async fn fetch(
    opts: &AgentOptions,
    path: &str,
    mut body: Value,
    identity: Option<&[u8]>,
) -> Result<(i64, i64), String> {
    let (key, csr) = ward_pki::ca::key_and_csr().map_err(|e| e.to_string())?;
    body["csr"] = json!(csr);
    if let Some(ttl) = opts.ttl {
        body["ttl"] = json!(ttl);
    }
    let url = format!("{}{path}", opts.control);
    let resp = client(opts, identity)?.post(&url).json(&body).send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if status != reqwest::StatusCode::CREATED {
        return Err(format!("{url}: {status} {}", v["error"].as_str().unwrap_or("")));
    }
    let chain = v["certificate_chain"].as_str().ok_or("no certificate in the answer")?;
    std::fs::create_dir_all(&opts.dir).map_err(|e| format!("{}: {e}", opts.dir.display()))?;
    // Key first: an application that sees the new certificate finds its key.
    ward_control::ca::write_atomic(&opts.dir, KEY, &key, true)?;
    ward_control::ca::write_atomic(&opts.dir, CERT, chain, false)?;
    if let Some(bundle) = v["bundle"].as_str() {
        ward_control::ca::write_atomic(&opts.dir, BUNDLE, bundle, false)?;
    }
    tracing::info!(
        spiffe_id = v["spiffe_id"].as_str().unwrap_or("?"),
        serial = v["serial"].as_str().unwrap_or("?"),
        "SVID written"
    );
    let (_, not_after) = validity(&opts.dir)?;
    Ok((now(), not_after))
}

fn validity(dir: &Path) -> Result<(i64, i64), String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let leaf =
        CertificateDer::from_pem_file(dir.join(CERT)).map_err(|e| format!("{}: {e}", dir.join(CERT).display()))?;
    ward_pki::verify::validity_of(&leaf).map_err(|e| e.to_string())
}

/// When to renew an SVID valid from `from` to `to`: half-life, ± a tenth.
fn renew_at(from: i64, to: i64) -> i64 {
    let life = (to - from).max(2);
    let tenth = (life / 10).max(1);
    let jitter =
        ward_crypto::random_bytes::<8>().map_or(0, |b| i64::try_from(u64::from_le_bytes(b) % 1024).unwrap_or(0));
    from + life / 2 + (jitter * 2 * tenth / 1024) - tenth
}

fn now() -> i64 {
    i64::try_from(ward_control::now()).unwrap_or(i64::MAX)
}

/// Run the agent until it is stopped (or once).
///
/// # Errors
/// A message when the first SVID cannot be had, or the current one expired
/// without a successful renewal.
pub async fn run(opts: AgentOptions) -> Result<(), String> {
    let mut current = validity(&opts.dir).ok();
    if current.is_none() {
        let file = opts.join_token_file.as_ref().ok_or("no SVID yet: give --join-token-file")?;
        let token = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        current = Some(fetch(&opts, "/svid/join", json!({"join_token": token.trim()}), None).await?);
        if opts.once {
            return Ok(());
        }
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        let (from, to) = current.ok_or("no SVID")?;
        let at = renew_at(from, to);
        let wait = u64::try_from(at - now()).unwrap_or(0);
        if wait > 0 && !opts.once {
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
        let identity = [std::fs::read(opts.dir.join(CERT)), std::fs::read(opts.dir.join(KEY))]
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", opts.dir.display()))?
            .concat();
        match fetch(&opts, "/svid/renew", json!({}), Some(&identity)).await {
            Ok(v) => {
                current = Some(v);
                backoff = Duration::from_secs(1);
                if opts.once {
                    return Ok(());
                }
            }
            Err(e) if now() < to => {
                tracing::warn!(error = %e, retry_in = ?backoff, "SVID renewal failed; the current one is still valid");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(format!("the SVID expired and renewal failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_at_half_life_within_a_tenth() {
        for _ in 0..200 {
            let at = renew_at(1000, 1000 + 3600);
            assert!((1000 + 1800 - 360..=1000 + 1800 + 360).contains(&at), "{at}");
        }
        assert!(renew_at(0, 0) <= 1, "a zero lifetime renews at once");
    }
}
