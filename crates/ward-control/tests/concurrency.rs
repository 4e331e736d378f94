//! Every shared map of the control plane under parallel writers (issue 16):
//! revocations, certificate denials, and clients created and deleted at
//! once. Before the fix each update loaded the map, copied it, inserted and
//! stored the copy back, so parallel writers overwrote one another: 16
//! clients revoking 2,000 tokens left over half of them active.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Barrier};

use ward_control::{ControlPlane, ControlSettings, Store};
use ward_core::{LocalRevocations, RevocationList};
use ward_issuer::clients::GrantType;

const THREADS: usize = 16;

/// A scratch directory in memory where there is one: the store's commits
/// (an fsync each) then take microseconds, as long as the in-memory updates
/// around them, so writers overlap as they do under load.
fn scratch() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() }
}

fn open(path: &std::path::Path) -> ControlPlane {
    ControlPlane::open(Store::open(path).unwrap(), ControlSettings::new("https://ward.test")).unwrap()
}

/// Run `work(thread)` on [`THREADS`] threads released at once.
fn parallel(work: impl Fn(usize) + Sync) {
    let start = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (start, work) = (&start, &work);
            s.spawn(move || {
                start.wait();
                work(t);
            });
        }
    });
}

#[test]
fn parallel_revocations_and_denials_are_all_kept() {
    let dir = scratch();
    let pushed = Arc::new(LocalRevocations::new());
    let cp = open(&dir.path().join("control.redb")).with_revocations(pushed.clone());
    let until = ward_control::now() + 3600;
    parallel(|t| {
        for i in 0..120 {
            cp.revoke(&format!("jti-{t}-{i}"), until).unwrap();
            if i % 2 == 0 {
                cp.deny_certificate(ward_core::X509_SERIAL, &format!("{t:02x}{i:04x}"), until).unwrap();
                cp.deny_certificate(ward_core::SPIFFE_ID, &format!("spiffe://td/w{t}/{i}"), until).unwrap();
            }
        }
    });
    let now = ward_control::now();
    let mut lost = Vec::new();
    for t in 0..THREADS {
        for i in 0..120 {
            let jti = format!("jti-{t}-{i}");
            if !cp.is_revoked(&jti) || !pushed.is_revoked("https://ward.test", &jti) {
                lost.push(jti);
            }
            if i % 2 == 0 {
                let serial = format!("{t:02x}{i:04x}");
                let id = format!("spiffe://td/w{t}/{i}");
                if !cp.is_certificate_denied(ward_core::X509_SERIAL, &serial, now)
                    || !cp.is_certificate_denied(ward_core::SPIFFE_ID, &id, now)
                {
                    lost.push(serial);
                }
            }
        }
    }
    assert!(lost.is_empty(), "{} revocations or denials lost: {lost:?}", lost.len());
}

fn spec(id: &str) -> ward_control::ClientSpec {
    ward_control::ClientSpec {
        id: id.into(),
        grants: vec![GrantType::ClientCredentials],
        scopes: vec!["read".into()],
        audiences: vec!["orders".into()],
        token_ttl: 300,
        redirect_uris: Vec::new(),
        roles: Vec::new(),
        jwks: None,
    }
}

#[test]
fn clients_created_and_deleted_in_parallel_match_the_store() {
    let dir = scratch();
    let path = dir.path().join("control.redb");
    let cp = open(&path);
    // Every thread registers its own clients: none may go missing.
    parallel(|t| {
        for i in 0..40 {
            cp.create_client(&spec(&format!("c-{t}-{i}"))).unwrap();
        }
    });
    assert_eq!(cp.client_ids().len(), THREADS * 40, "every registered client is known");
    // Every thread deletes its own: none may come back.
    parallel(|t| {
        for i in 0..40 {
            assert!(cp.delete_client(&format!("c-{t}-{i}")).unwrap());
        }
    });
    assert_eq!(cp.client_ids(), Vec::<String>::new(), "every deleted client is gone");
    // Creates and deletes of the same ids racing: memory and store agree,
    // and one id is never created twice.
    let created = std::sync::atomic::AtomicUsize::new(0);
    parallel(|t| {
        for i in 0..40 {
            let id = format!("r-{i}");
            if t % 2 == 0 {
                if cp.create_client(&spec(&id)).is_ok() {
                    created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            } else {
                let _ = cp.delete_client(&id);
            }
        }
    });
    let in_memory = cp.client_ids();
    drop(cp);
    let stored = open(&path).client_ids();
    assert_eq!(in_memory, stored, "memory and store disagree");
    assert!(created.into_inner() >= in_memory.len());
}
