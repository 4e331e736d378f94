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
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use ward_core::TokenOwner;
use ward_issuer::clients::{Client, ClientId, GrantType};
use ward_issuer::keys::RingKey;
use ward_issuer::refresh::RefreshGrant;
use zeroize::Zeroizing;

const CLIENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("clients");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("signing_keys");
const REVOKED: TableDefinition<&str, u64> = TableDefinition::new("revoked_jti");
/// Denied certificates: `<namespace>\n<serial or SPIFFE ID>` → until.
const REVOKED_CERTS: TableDefinition<&str, u64> = TableDefinition::new("revoked_certs");
/// One-time join tokens by the hex SHA-256 of the token: `<expiry>\n<SPIFFE ID>`.
const JOIN_TOKENS: TableDefinition<&str, &str> = TableDefinition::new("join_tokens");
const USERS: TableDefinition<&str, &str> = TableDefinition::new("users");
/// Refresh tokens by the hex SHA-256 of the token.
const REFRESH: TableDefinition<&str, &[u8]> = TableDefinition::new("refresh_tokens");
/// Refresh token families by id.
const FAMILIES: TableDefinition<&str, &[u8]> = TableDefinition::new("refresh_families");
/// Cut-offs: `<claim>\n<name>` (`sub` or `client_id`) → (cut-off, kept until).
const CUT_OFFS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("token_cut_offs");

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
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    /// A public client (no secret, no keys) — said explicitly, so that a
    /// record missing its secret is an error, never a public client.
    #[serde(default)]
    public: bool,
}

/// A local user: the argon2id hash (PHC string) and the roles their tokens carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// PHC string of the password hash.
    pub phc: String,
    /// Roles (`roles` claim of their access and ID tokens).
    #[serde(default)]
    pub roles: Vec<String>,
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

#[derive(Serialize, Deserialize)]
struct RefreshRecord {
    grant: RefreshGrant,
    /// Rotated already: presenting it again is a reuse.
    used: bool,
}

/// A refresh token family: whether it was revoked, and the access tokens
/// it produced (revoked with it).
#[derive(Serialize, Deserialize, Default)]
struct FamilyRecord {
    revoked: bool,
    expires: u64,
    access: Vec<(String, u64)>,
}

/// A refresh token to store: its hash, what it stands for, and the access
/// token issued with it.
#[derive(Debug, Clone)]
pub struct NewRefresh {
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// What it stands for.
    pub grant: RefreshGrant,
    /// `jti` and `exp` of the access token issued with it.
    pub access: (String, u64),
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum RefreshUse<T> {
    /// No such token (or its family ended).
    Unknown,
    /// Its family was revoked before (after a reuse): refused, nothing changes.
    FamilyRevoked,
    /// The token was already rotated: the family is now revoked; these
    /// access tokens (`jti`, `exp`) must be revoked too.
    Reused {
        /// The family.
        family: String,
        /// Its access tokens.
        access: Vec<(String, u64)>,
    },
    /// The caller's checks refused it; nothing changed.
    Refused(ward_issuer::OAuthError),
    /// Rotated: the old token is retired, the new one stored.
    Rotated(T),
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
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
        redirect_uris: c.redirect_uris.clone(),
        roles: c.roles.clone(),
        public: c.is_public(),
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
    // INVARIANT: a client with neither a secret nor keys is public only if
    // it was stored as one; anything else is damage, not a way in.
    if (secret_hash.is_none() && r.public_jwks.is_none()) != r.public {
        return Err(StoreError(format!("client {}: its authentication method is inconsistent", r.id)));
    }
    Ok(Client {
        id: ClientId::new(&r.id).map_err(|_| StoreError(format!("bad client id `{}`", r.id)))?,
        secret_hash,
        public_jwks: r.public_jwks,
        grants: r.grants.iter().map(|g| GrantType::parse(g)).collect::<Result<BTreeSet<_>, _>>().map_err(err)?,
        scopes: r.scopes.into_iter().collect(),
        audiences: r.audiences,
        token_ttl: r.token_ttl,
        redirect_uris: r.redirect_uris,
        roles: r.roles,
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
        txn.open_table(REVOKED_CERTS).map_err(err)?;
        txn.open_table(JOIN_TOKENS).map_err(err)?;
        txn.open_table(USERS).map_err(err)?;
        txn.open_table(REFRESH).map_err(err)?;
        txn.open_table(FAMILIES).map_err(err)?;
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
            let alg = ward_issuer::keys::stored_algorithm(&record.alg).ok_or_else(|| {
                StoreError(format!("key {}: algorithm `{}` is not issued by Ward", kid.value(), record.alg))
            })?;
            let pkcs8 = Zeroizing::new(STANDARD.decode(&record.pkcs8).map_err(err)?);
            out.push(RingKey::new(alg, pkcs8, record.created, record.activates).map_err(err)?);
        }
        Ok(out)
    }

    /// Save a user, insert or replace.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn put_user(&self, name: &str, user: &UserRecord) -> Result<(), StoreError> {
        let text = Zeroizing::new(serde_json::to_string(user).map_err(err)?);
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(USERS).map_err(err)?.insert(name, text.as_str()).map_err(err)?;
        txn.commit().map_err(err)
    }

    /// A user (a bare PHC string, as stored before roles existed, reads as a
    /// user without roles).
    ///
    /// # Errors
    /// [`StoreError`], also for a record that does not parse.
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(USERS).map_err(err)?;
        let Some(v) = table.get(name).map_err(err)? else { return Ok(None) };
        let text = v.value();
        if text.starts_with('$') {
            return Ok(Some(UserRecord { phc: text.to_owned(), roles: Vec::new() }));
        }
        serde_json::from_str(text).map(Some).map_err(|e| StoreError(format!("user {name}: {e}")))
    }

    /// Record a revoked token id until its expiry.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn revoke(&self, jti: &str, exp: u64) -> Result<(), StoreError> {
        self.put_until(REVOKED, jti, exp)
    }

    /// Revoked token ids that have not expired at `now` (expired ones are deleted).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn revoked(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.live(REVOKED, now)
    }

    /// Deny a certificate (by `namespace`: `x509-serial` or `spiffe-id`) until `until`.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn revoke_cert(&self, namespace: &str, value: &str, until: u64) -> Result<(), StoreError> {
        self.put_until(REVOKED_CERTS, &format!("{namespace}\n{value}"), until)
    }

    /// Denied certificates still in force at `now`: (namespace, value, until).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn revoked_certs(&self, now: u64) -> Result<Vec<(String, String, u64)>, StoreError> {
        Ok(self
            .live(REVOKED_CERTS, now)?
            .into_iter()
            .filter_map(|(k, until)| k.split_once('\n').map(|(ns, v)| (ns.to_owned(), v.to_owned(), until)))
            .collect())
    }

    /// Hold a join token (by its hash) for `spiffe_id` until `expires`.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn put_join_token(&self, hash: &[u8; 32], spiffe_id: &str, expires: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        let value = format!("{expires}\n{spiffe_id}");
        txn.open_table(JOIN_TOKENS).map_err(err)?.insert(hex(hash).as_str(), value.as_str()).map_err(err)?;
        txn.commit().map_err(err)
    }

    /// Take a join token out (single use): its SPIFFE ID, if it existed and
    /// had not expired at `now`. Expired tokens are dropped on the way.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn take_join_token(&self, hash: &[u8; 32], now: u64) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        let found = {
            let mut table = txn.open_table(JOIN_TOKENS).map_err(err)?;
            let taken = table.remove(hex(hash).as_str()).map_err(err)?.map(|v| v.value().to_owned());
            taken.and_then(|v| {
                let (expires, id) = v.split_once('\n')?;
                (expires.parse::<u64>().ok()? > now).then(|| id.to_owned())
            })
        };
        txn.commit().map_err(err)?;
        Ok(found)
    }

    fn put_until(&self, table: TableDefinition<&str, u64>, key: &str, until: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        txn.open_table(table).map_err(err)?.insert(key, until).map_err(err)?;
        txn.commit().map_err(err)
    }

    /// Entries of `table` still in force at `now`; the others are deleted.
    fn live(&self, table: TableDefinition<&str, u64>, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        let mut live = Vec::new();
        {
            let mut table = txn.open_table(table).map_err(err)?;
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

    /// Store the first refresh token of a new family.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn start_family(&self, new: &NewRefresh) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut families = txn.open_table(FAMILIES).map_err(err)?;
            let family =
                FamilyRecord { revoked: false, expires: new.grant.family_expires, access: vec![new.access.clone()] };
            families
                .insert(new.grant.family.as_str(), serde_json::to_vec(&family).map_err(err)?.as_slice())
                .map_err(err)?;
            let record = RefreshRecord { grant: new.grant.clone(), used: false };
            txn.open_table(REFRESH)
                .map_err(err)?
                .insert(hex(&new.hash).as_str(), serde_json::to_vec(&record).map_err(err)?.as_slice())
                .map_err(err)?;
        }
        txn.commit().map_err(err)
    }

    /// Present the refresh token hashing to `old`, in one transaction: an
    /// unused token of a live family goes to `step` (the caller's checks
    /// and minting); if `step` accepts, the token is retired and the one it
    /// returns stored in the same family. A used token, or one of a revoked
    /// family, revokes the family.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn use_refresh<T>(
        &self,
        old: &[u8; 32],
        now: u64,
        step: impl FnOnce(&RefreshGrant) -> Result<(T, NewRefresh), ward_issuer::OAuthError>,
    ) -> Result<RefreshUse<T>, StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        let outcome = {
            let mut tokens = txn.open_table(REFRESH).map_err(err)?;
            let mut families = txn.open_table(FAMILIES).map_err(err)?;
            let key = hex(old);
            let Some(record) = tokens.get(key.as_str()).map_err(err)?.map(|v| v.value().to_vec()) else {
                return Ok(RefreshUse::Unknown);
            };
            let mut record: RefreshRecord = serde_json::from_slice(&record).map_err(err)?;
            let fid = record.grant.family.clone();
            let mut family: FamilyRecord = match families.get(fid.as_str()).map_err(err)? {
                Some(v) => serde_json::from_slice(v.value()).map_err(err)?,
                None => return Ok(RefreshUse::Unknown),
            };
            if family.expires <= now {
                return Ok(RefreshUse::Unknown);
            }
            if family.revoked {
                return Ok(RefreshUse::FamilyRevoked);
            }
            if record.used {
                family.revoked = true;
                families.insert(fid.as_str(), serde_json::to_vec(&family).map_err(err)?.as_slice()).map_err(err)?;
                RefreshUse::Reused {
                    family: fid,
                    access: family.access.into_iter().filter(|(_, e)| *e > now).collect(),
                }
            } else {
                match step(&record.grant) {
                    Err(e) => return Ok(RefreshUse::Refused(e)),
                    Ok((out, new)) => {
                        record.used = true;
                        tokens
                            .insert(key.as_str(), serde_json::to_vec(&record).map_err(err)?.as_slice())
                            .map_err(err)?;
                        let fresh = RefreshRecord { grant: new.grant, used: false };
                        tokens
                            .insert(hex(&new.hash).as_str(), serde_json::to_vec(&fresh).map_err(err)?.as_slice())
                            .map_err(err)?;
                        family.access.retain(|(_, e)| *e > now);
                        family.access.push(new.access);
                        families
                            .insert(fid.as_str(), serde_json::to_vec(&family).map_err(err)?.as_slice())
                            .map_err(err)?;
                        RefreshUse::Rotated(out)
                    }
                }
            }
        };
        txn.commit().map_err(err)?;
        Ok(outcome)
    }

    /// Revoke a family (a redeemed authorization code was presented again);
    /// returns its live access tokens (`jti`, `exp`).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn revoke_family(&self, family: &str, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        let access = {
            let mut families = txn.open_table(FAMILIES).map_err(err)?;
            let record = families.get(family).map_err(err)?.map(|v| v.value().to_vec());
            match record {
                None => Vec::new(),
                Some(bytes) => {
                    let mut f: FamilyRecord = serde_json::from_slice(&bytes).map_err(err)?;
                    f.revoked = true;
                    families.insert(family, serde_json::to_vec(&f).map_err(err)?.as_slice()).map_err(err)?;
                    f.access.into_iter().filter(|(_, e)| *e > now).collect()
                }
            }
        };
        txn.commit().map_err(err)?;
        Ok(access)
    }

    /// What the refresh token hashing to `hash` stands for, and whether it
    /// can still be used at `now` (not rotated yet, its family neither
    /// revoked nor ended). `None` for a token Ward never issued or purged.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn refresh_token(&self, hash: &[u8; 32], now: u64) -> Result<Option<(RefreshGrant, bool)>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let Some(record) = txn.open_table(REFRESH).map_err(err)?.get(hex(hash).as_str()).map_err(err)? else {
            return Ok(None);
        };
        let record: RefreshRecord = serde_json::from_slice(record.value()).map_err(err)?;
        let family = txn.open_table(FAMILIES).map_err(err)?.get(record.grant.family.as_str()).map_err(err)?;
        let live = match family {
            Some(f) => {
                let f: FamilyRecord = serde_json::from_slice(f.value()).map_err(err)?;
                !f.revoked && f.expires > now && !record.used
            }
            None => false,
        };
        Ok(Some((record.grant, live)))
    }

    /// Revoke every live family of `owner` `name` (the user's, or those
    /// issued to the client), in one transaction: how many, and their live
    /// access tokens (`jti`, `exp`), to be revoked too.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn revoke_families_of(
        &self,
        owner: TokenOwner,
        name: &str,
        now: u64,
    ) -> Result<(usize, Vec<(String, u64)>), StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        let ended = {
            let mut ids = BTreeSet::new();
            for row in txn.open_table(REFRESH).map_err(err)?.iter().map_err(err)? {
                let (_, v) = row.map_err(err)?;
                let r: RefreshRecord = serde_json::from_slice(v.value()).map_err(err)?;
                let of = match owner {
                    TokenOwner::Subject => &r.grant.subject,
                    TokenOwner::Client => &r.grant.client_id,
                };
                if of == name {
                    ids.insert(r.grant.family);
                }
            }
            let mut families = txn.open_table(FAMILIES).map_err(err)?;
            let (mut count, mut access) = (0, Vec::new());
            for id in ids {
                let Some(bytes) = families.get(id.as_str()).map_err(err)?.map(|v| v.value().to_vec()) else { continue };
                let mut f: FamilyRecord = serde_json::from_slice(&bytes).map_err(err)?;
                if f.revoked || f.expires <= now {
                    continue;
                }
                f.revoked = true;
                count += 1;
                access.extend(f.access.iter().filter(|(_, e)| *e > now).cloned());
                families.insert(id.as_str(), serde_json::to_vec(&f).map_err(err)?.as_slice()).map_err(err)?;
            }
            (count, access)
        };
        txn.commit().map_err(err)?;
        Ok(ended)
    }

    /// Record a cut-off for `owner` `name`: their tokens issued at or before
    /// `at` are refused, until `until`. An earlier one is never restored.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn put_cut_off(&self, owner: TokenOwner, name: &str, at: u64, until: u64) -> Result<(), StoreError> {
        let key = format!("{}\n{name}", owner.claim());
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut table = txn.open_table(CUT_OFFS).map_err(err)?;
            let (old_at, old_until) = table.get(key.as_str()).map_err(err)?.map_or((0, 0), |v| v.value());
            table.insert(key.as_str(), (at.max(old_at), until.max(old_until))).map_err(err)?;
        }
        txn.commit().map_err(err)
    }

    /// Cut-offs still kept at `now`: (owner, name, cut-off, until); ended ones are deleted.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn cut_offs(&self, now: u64) -> Result<Vec<(TokenOwner, String, u64, u64)>, StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        let mut live = Vec::new();
        {
            let mut table = txn.open_table(CUT_OFFS).map_err(err)?;
            let mut ended = Vec::new();
            for row in table.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                let (at, until) = v.value();
                let (owner, name) = match k.value().split_once('\n') {
                    Some(("sub", name)) => (TokenOwner::Subject, name),
                    Some(("client_id", name)) => (TokenOwner::Client, name),
                    _ => return Err(StoreError(format!("unreadable cut-off `{}`", k.value()))),
                };
                if until > now {
                    live.push((owner, name.to_owned(), at, until));
                } else {
                    ended.push(k.value().to_owned());
                }
            }
            for k in ended {
                table.remove(k.as_str()).map_err(err)?;
            }
        }
        txn.commit().map_err(err)?;
        Ok(live)
    }

    /// Delete everything that has ended by `now`: revoked token ids and
    /// denied certificates past their time, cut-offs no token can fall
    /// under any more, unused join tokens that expired, and ended refresh
    /// token families. How many entries went.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn purge(&self, now: u64) -> Result<usize, StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        let mut removed = 0;
        {
            for table in [REVOKED, REVOKED_CERTS] {
                let mut t = txn.open_table(table).map_err(err)?;
                let before = t.len().map_err(err)?;
                t.retain(|_, until| until > now).map_err(err)?;
                removed += before - t.len().map_err(err)?;
            }
            let mut t = txn.open_table(CUT_OFFS).map_err(err)?;
            let before = t.len().map_err(err)?;
            t.retain(|_, (_, until)| until > now).map_err(err)?;
            removed += before - t.len().map_err(err)?;
            let mut t = txn.open_table(JOIN_TOKENS).map_err(err)?;
            let before = t.len().map_err(err)?;
            // An unreadable expiry is dropped too: it could never be redeemed.
            t.retain(|_, v| v.split_once('\n').and_then(|(e, _)| e.parse::<u64>().ok()).is_some_and(|e| e > now))
                .map_err(err)?;
            removed += before - t.len().map_err(err)?;
        }
        txn.commit().map_err(err)?;
        let removed = usize::try_from(removed).unwrap_or(usize::MAX);
        Ok(removed.saturating_add(self.purge_refresh(now)?))
    }

    /// Delete ended families and their refresh tokens; how many tokens went.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn purge_refresh(&self, now: u64) -> Result<usize, StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        let removed = {
            let mut families = txn.open_table(FAMILIES).map_err(err)?;
            let mut ended = BTreeSet::new();
            for row in families.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                let f: FamilyRecord = serde_json::from_slice(v.value()).map_err(err)?;
                if f.expires <= now {
                    ended.insert(k.value().to_owned());
                }
            }
            for f in &ended {
                families.remove(f.as_str()).map_err(err)?;
            }
            let mut tokens = txn.open_table(REFRESH).map_err(err)?;
            let mut dead = Vec::new();
            for row in tokens.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                let r: RefreshRecord = serde_json::from_slice(v.value()).map_err(err)?;
                if r.grant.family_expires <= now || ended.contains(&r.grant.family) {
                    dead.push(k.value().to_owned());
                }
            }
            for k in &dead {
                tokens.remove(k.as_str()).map_err(err)?;
            }
            dead.len()
        };
        txn.commit().map_err(err)?;
        Ok(removed)
    }
}
