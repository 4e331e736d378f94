//! The control plane's embedded store (redb: one file, ACID, fsync on
//! commit; created 0600 because it holds signing keys and client secret
//! hashes).
//!
//! redb is synchronous; the HTTP handlers only read in-memory snapshots and
//! call the store from `spawn_blocking` when they write.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use ward_issuer::clients::{Client, ClientId, GrantType};
use ward_issuer::keys::RingKey;
use zeroize::Zeroizing;

const CLIENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("clients");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("signing_keys");
const REVOKED: TableDefinition<&str, u64> = TableDefinition::new("revoked_jti");
const USERS: TableDefinition<&str, &str> = TableDefinition::new("users");

/// A store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("control store: {0}")]
pub struct StoreError(pub String);

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

#[derive(Debug, Serialize, Deserialize)]
struct ClientRecord {
    id: String,
    secret_sha256: Option<String>,
    #[serde(default)]
    public_jwks: Option<String>,
    grants: Vec<String>,
    scopes: Vec<String>,
    audiences: Vec<String>,
    token_ttl: u64,
}

#[derive(Serialize, Deserialize)]
struct KeyRecord {
    alg: String,
    pkcs8: String,
    created: u64,
    activates: u64,
}

impl Drop for KeyRecord {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.pkcs8);
    }
}

fn to_record(c: &Client) -> ClientRecord {
    ClientRecord {
        id: c.id.as_str().to_owned(),
        secret_sha256: c.secret_hash.map(|h| h.iter().map(|b| format!("{b:02x}")).collect()),
        public_jwks: c.public_jwks.clone(),
        grants: c.grants.iter().map(|g| g.as_str().to_owned()).collect(),
        scopes: c.scopes.iter().cloned().collect(),
        audiences: c.audiences.clone(),
        token_ttl: c.token_ttl,
    }
}

fn from_record(r: ClientRecord) -> Result<Client, StoreError> {
    let secret_hash = match r.secret_sha256 {
        None => None,
        Some(h) => {
            let bytes: Vec<u8> = (0..h.len())
                .step_by(2)
                .map(|i| h.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
                .collect::<Option<_>>()
                .ok_or_else(|| StoreError(format!("client {}: bad secret hash", r.id)))?;
            Some(<[u8; 32]>::try_from(bytes).map_err(|_| StoreError(format!("client {}: bad secret hash", r.id)))?)
        }
    };
    Ok(Client {
        id: ClientId::new(&r.id).map_err(|_| StoreError(format!("bad client id `{}`", r.id)))?,
        secret_hash,
        public_jwks: r.public_jwks,
        grants: r.grants.iter().map(|g| GrantType::parse(g)).collect::<Result<BTreeSet<_>, _>>().map_err(err)?,
        scopes: r.scopes.into_iter().collect(),
        audiences: r.audiences,
        token_ttl: r.token_ttl,
    })
}

/// The control plane's persistent state.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Open (or create, mode 0600) the store at `path`.
    ///
    /// # Errors
    /// [`StoreError`] naming the file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
        }
        // Create it private before redb opens it.
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
        let db = Database::create(path).map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(CLIENTS).map_err(err)?;
        txn.open_table(KEYS).map_err(err)?;
        txn.open_table(REVOKED).map_err(err)?;
        txn.open_table(USERS).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(Self { db })
    }

    /// Save a client (insert or replace).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn put_client(&self, client: &Client) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(&to_record(client)).map_err(err)?;
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(CLIENTS).map_err(err)?.insert(client.id.as_str(), bytes.as_slice()).map_err(err)?;
        txn.commit().map_err(err)
    }

    /// Delete a client; whether it existed.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn delete_client(&self, id: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        let existed = txn.open_table(CLIENTS).map_err(err)?.remove(id).map_err(err)?.is_some();
        txn.commit().map_err(err)?;
        Ok(existed)
    }

    /// Every client.
    ///
    /// # Errors
    /// [`StoreError`], also for a record that does not parse.
    pub fn clients(&self) -> Result<Vec<Client>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(CLIENTS).map_err(err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(err)? {
            let (_, v) = row.map_err(err)?;
            out.push(from_record(serde_json::from_slice(v.value()).map_err(err)?)?);
        }
        Ok(out)
    }

    /// Save a signing key.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn put_key(&self, key: &RingKey) -> Result<(), StoreError> {
        let record = KeyRecord {
            alg: key.signer().algorithm().as_str().to_owned(),
            pkcs8: STANDARD.encode(key.pkcs8()),
            created: key.created,
            activates: key.activates,
        };
        let bytes = Zeroizing::new(serde_json::to_vec(&record).map_err(err)?);
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(KEYS).map_err(err)?.insert(key.kid(), bytes.as_slice()).map_err(err)?;
        txn.commit().map_err(err)
    }

    /// Remove signing keys by id.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn delete_keys(&self, kids: &[String]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut table = txn.open_table(KEYS).map_err(err)?;
            for kid in kids {
                table.remove(kid.as_str()).map_err(err)?;
            }
        }
        txn.commit().map_err(err)
    }

    /// Every signing key.
    ///
    /// # Errors
    /// [`StoreError`], also for a key that does not load.
    pub fn keys(&self) -> Result<Vec<RingKey>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(KEYS).map_err(err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(err)? {
            let (kid, v) = row.map_err(err)?;
            let record: KeyRecord = serde_json::from_slice(v.value()).map_err(err)?;
            let alg = ward_issuer::keys::issued_algorithm(&record.alg).ok_or_else(|| {
                StoreError(format!("key {}: algorithm `{}` is not issued by Ward", kid.value(), record.alg))
            })?;
            let pkcs8 = Zeroizing::new(STANDARD.decode(&record.pkcs8).map_err(err)?);
            out.push(RingKey::new(alg, pkcs8, record.created, record.activates).map_err(err)?);
        }
        Ok(out)
    }

    /// Save a user's password hash (PHC string), insert or replace.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn put_user(&self, name: &str, phc: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(USERS).map_err(err)?.insert(name, phc).map_err(err)?;
        txn.commit().map_err(err)
    }

    /// A user's password hash.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn user(&self, name: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(USERS).map_err(err)?;
        Ok(table.get(name).map_err(err)?.map(|v| v.value().to_owned()))
    }

    /// Record a revoked token id until its expiry.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn revoke(&self, jti: &str, exp: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(REVOKED).map_err(err)?.insert(jti, exp).map_err(err)?;
        txn.commit().map_err(err)
    }

    /// Revoked token ids that have not expired at `now` (expired ones are deleted).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn revoked(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        let mut live = Vec::new();
        {
            let mut table = txn.open_table(REVOKED).map_err(err)?;
            let mut expired = Vec::new();
            for row in table.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                if v.value() > now {
                    live.push((k.value().to_owned(), v.value()));
                } else {
                    expired.push(k.value().to_owned());
                }
            }
            for k in expired {
                table.remove(k.as_str()).map_err(err)?;
            }
        }
        txn.commit().map_err(err)?;
        Ok(live)
    }
}
