//! The trust domain's CA on disk (`ward ca init`, `ward ca rotate`) and as
//! the control plane holds it.
//!
//! ```text
//! <ca_dir>/root.crt          root certificate (10 years)
//! <ca_dir>/root.key          root key (0600): only `ward ca rotate` needs it; keep it offline otherwise
//! <ca_dir>/intermediate.crt  the intermediate that signs SVIDs (1 year)
//! <ca_dir>/intermediate.key  its key (0600), loaded by the control plane
//! <ca_dir>/bundle.pem        the trust bundle verifiers load (the root)
//! ```
//!
//! Files are written to a temporary name and renamed, so a reader never
//! sees half a key; keys are created 0600.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ward_pki::ca::SvidIssuer;

use crate::ControlError;

/// File names in a CA directory.
pub mod files {
    /// Root certificate.
    pub const ROOT_CERT: &str = "root.crt";
    /// Root key.
    pub const ROOT_KEY: &str = "root.key";
    /// Intermediate certificate.
    pub const INTERMEDIATE_CERT: &str = "intermediate.crt";
    /// Intermediate key.
    pub const INTERMEDIATE_KEY: &str = "intermediate.key";
    /// Trust bundle.
    pub const BUNDLE: &str = "bundle.pem";
}

/// Replace `dir/name` with `text` atomically (a temporary file, synced, then
/// renamed), created 0600 when `private` (keys), else 0644.
///
/// # Errors
/// A message naming the file.
pub fn write_atomic(dir: &Path, name: &str, text: &str, private: bool) -> Result<(), String> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(fail)?;
    std::fs::rename(&tmp, &path).map_err(fail)
}

/// A CA directory for one trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaDir {
    dir: PathBuf,
    trust_domain: String,
}

fn invalid(e: impl std::fmt::Display) -> ControlError {
    ControlError::Invalid(e.to_string())
}

impl CaDir {
    /// The CA of `trust_domain` in `dir`.
    #[must_use]
    pub fn new(dir: &Path, trust_domain: &str) -> Self {
        Self { dir: dir.to_owned(), trust_domain: trust_domain.to_owned() }
    }

    /// The trust domain.
    #[must_use]
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    fn write(&self, name: &str, text: &str, private: bool) -> Result<(), ControlError> {
        write_atomic(&self.dir, name, text, private).map_err(invalid)
    }

    fn read(&self, name: &str) -> Result<String, ControlError> {
        let path = self.dir.join(name);
        std::fs::read_to_string(&path)
            .map_err(|e| invalid(format!("{}: {e} (create the CA with `ward ca init`)", path.display())))
    }

    fn read_key(&self, name: &str) -> Result<zeroize::Zeroizing<String>, ControlError> {
        let path = self.dir.join(name);
        if std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            return Err(invalid(format!("{}: readable by group or others; chmod 600 it", path.display())));
        }
        self.read(name).map(zeroize::Zeroizing::new)
    }

    /// Create the CA (never over an existing one).
    ///
    /// # Errors
    /// [`ControlError::Invalid`] for an existing CA, a bad trust domain, or an I/O failure.
    pub fn init(&self) -> Result<(), ControlError> {
        if self.dir.join(files::ROOT_CERT).exists() {
            return Err(invalid(format!("{}: a CA exists already", self.dir.display())));
        }
        let ca = ward_pki::ca::init(&self.trust_domain).map_err(invalid)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| invalid(format!("{}: {e}", self.dir.display())))?;
        self.write(files::ROOT_KEY, &ca.root.key_pem, true)?;
        self.write(files::ROOT_CERT, &ca.root.cert_pem, false)?;
        self.write(files::INTERMEDIATE_KEY, &ca.intermediate.key_pem, true)?;
        self.write(files::INTERMEDIATE_CERT, &ca.intermediate.cert_pem, false)?;
        self.write(files::BUNDLE, &ca.root.cert_pem, false)
    }

    /// Replace the intermediate with a new one from the root. SVIDs of the
    /// old one stay valid (they chain to the same root) until they expire.
    ///
    /// # Errors
    /// [`ControlError::Invalid`] when the root key is not here, or an I/O failure.
    pub fn rotate(&self) -> Result<(), ControlError> {
        let root = self.read(files::ROOT_CERT)?;
        let root_key = self.read_key(files::ROOT_KEY)?;
        let next = ward_pki::ca::new_intermediate(&root, &root_key, &self.trust_domain).map_err(invalid)?;
        self.write(files::INTERMEDIATE_KEY, &next.key_pem, true)?;
        self.write(files::INTERMEDIATE_CERT, &next.cert_pem, false)
    }

    /// The intermediate, ready to sign, and the trust bundle.
    ///
    /// # Errors
    /// [`ControlError::Invalid`] for missing, unreadable or exposed files.
    pub fn load(&self) -> Result<(SvidIssuer, String), ControlError> {
        let key = self.read_key(files::INTERMEDIATE_KEY)?;
        let issuer = SvidIssuer::load(&self.read(files::INTERMEDIATE_CERT)?, &key, &self.trust_domain)
            .map_err(|e| invalid(format!("{}: {e}", self.dir.display())))?;
        Ok((issuer, self.read(files::BUNDLE)?))
    }

    /// SHA-256 of the intermediate certificate file (for the audit log).
    #[must_use]
    pub fn intermediate_fingerprint(&self) -> String {
        std::fs::read(self.dir.join(files::INTERMEDIATE_CERT))
            .map(|b| format!("sha256:{}", ward_crypto::sha256_hex(&b)))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_private_keys_and_rotation_keeps_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CaDir::new(&dir.path().join("ca"), "example.org");
        ca.init().unwrap();
        assert!(ca.init().is_err(), "never over an existing CA");
        for (name, mode) in [(files::ROOT_KEY, 0o600), (files::INTERMEDIATE_KEY, 0o600), (files::BUNDLE, 0o644)] {
            let m = std::fs::metadata(dir.path().join("ca").join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, mode, "{name}");
        }
        let before = ca.intermediate_fingerprint();
        let root = std::fs::read(dir.path().join("ca/root.crt")).unwrap();
        ca.rotate().unwrap();
        assert_ne!(ca.intermediate_fingerprint(), before);
        assert_eq!(std::fs::read(dir.path().join("ca/root.crt")).unwrap(), root);
        ca.load().unwrap();
        std::fs::remove_file(dir.path().join("ca/root.key")).unwrap();
        assert!(ca.rotate().is_err(), "rotation needs the root key");
        ca.load().unwrap();
    }
}
