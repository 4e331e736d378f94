//! `ward.toml`: parsed with `deny_unknown_fields`, then validated into typed
//! values. Every error names the file, the line and the field, and a config
//! with any error is refused as a whole: Ward never starts half-configured.
#![forbid(unsafe_code)]

mod detect;
mod error;
mod raw;
mod validate;

use std::path::Path;

pub use detect::{DetectConfig, RateKey, RateLimitConfig};
pub use error::ConfigError;
pub use validate::{
    AdminSettings, AuditSettings, AuditWitness, AuthorizerConfig, Config, ControlConfig, DEFAULT_STRIPPED_HEADERS,
    GatewaySettings, KeySettings, Limits, MtlsMode, MtlsSettings, OidcSettings, PolicySettings, ProviderConfig,
    RegistryRule, TlsSettings, TlsVersion, TokenSource, UnderscoreHeaders, UpstreamConfig, UpstreamSpiffe,
    UpstreamTarget, WitnessSettings,
};

/// Read and validate a configuration file. Relative paths inside it are
/// resolved against the file's directory. The files it names are not
/// looked at (an auditor's copy of `ward.toml` need not come with the
/// gateway's keys): a process that serves loads with [`load_to_serve`].
///
/// # Errors
/// [`ConfigError`] naming file, line and field.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, &e))?;
    parse(path, &text)
}

/// As [`load`], for a process about to serve: the certificate, key and
/// secret files the gateway reads at startup must exist, and a missing one
/// is reported with the field and line that name it, not later with its
/// path only.
///
/// # Errors
/// [`ConfigError`] naming file, line and field.
pub fn load_to_serve(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, &e))?;
    let config = parse(path, &text)?;
    validate::files_exist(&config).map_err(|invalid| ConfigError::invalid(path, &text, invalid))?;
    Ok(config)
}

/// Validate configuration text as if read from `path`. Only the text is
/// looked at: unlike [`load`], it does not ask whether the files it names
/// exist.
///
/// # Errors
/// [`ConfigError`] naming file, line and field.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigError::syntax(path, text, &e))?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    validate::validate(raw, base).map_err(|invalid| ConfigError::invalid(path, text, invalid))
}
