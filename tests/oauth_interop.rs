//! Interop with OAuth2/JWT clients nobody here wrote: Authlib performs the
//! client_credentials grant against `ward control` (both client
//! authentication methods, and a refused secret), private_key_jwt, and the
//! authorization-code grant with PKCE through Ward's login page (then a
//! refresh); PyJWT verifies access and ID tokens through the published JWK
//! set. Clients, users and tokens are managed with the real CLI (`ward
//! client create`, `ward user create`, `ward token issue|introspect|revoke`)
//! through the admin API.
//! `./test` installs the Python packages (`tests/requirements.txt`) into target/venv.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The pinned Python clients (`tests/requirements.txt`; `./test` installs them).
fn python() -> Command {
    common::python(&["authlib", "jwt", "cryptography", "requests"])
}

const SCRIPT: &str = r#"
import json, ssl, sys
import jwt
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.base_client.errors import OAuthError

base, ca, client_id, secret = sys.argv[1:5]
out = {}
for method in ("client_secret_basic", "client_secret_post"):
    s = OAuth2Session(client_id, secret, scope="orders:read", token_endpoint_auth_method=method)
    s.verify = ca
    # verify= explicitly: requests lets REQUESTS_CA_BUNDLE override a session's setting.
    tok = s.fetch_token(base + "/oauth2/token", grant_type="client_credentials", verify=ca)
    out[method] = tok
ctx = ssl.create_default_context(cafile=ca)
jwks = jwt.PyJWKClient(base + "/.well-known/jwks.json", ssl_context=ctx)
token = out["client_secret_basic"]["access_token"]
key = jwks.get_signing_key_from_jwt(token)
out["claims"] = jwt.decode(token, key.key, algorithms=["EdDSA"], audience="orders", issuer=base)
try:
    s = OAuth2Session(client_id, "wrong-" + secret, token_endpoint_auth_method="client_secret_basic")
    s.fetch_token(base + "/oauth2/token", grant_type="client_credentials", verify=ca)
    out["wrong_secret"] = "accepted"
except OAuthError as e:
    out["wrong_secret"] = e.error
print(json.dumps(out))
"#;

/// An EC P-256 key pair for a private_key_jwt client: the private PEM stays
/// with the client, the public JWK goes to Ward.
const KEYGEN: &str = r#"
import json
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import serialization
from authlib.jose import JsonWebKey
key = ec.generate_private_key(ec.SECP256R1())
pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
open("client-key.pem", "wb").write(pem)
jwk = JsonWebKey.import_key(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)).as_dict()
jwk["alg"] = "ES256"
jwk["kid"] = "client-key-1"
json.dump({"keys": [jwk]}, open("client-pub.json", "w"))
"#;

/// Authlib's private_key_jwt client authentication (RFC 7523), then PyJWT
/// reading the issued token's claims (signature checked above).
const PRIVATE_KEY_JWT: &str = r#"
import json, sys
import jwt
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import ECKey
base, ca = sys.argv[1:3]
endpoint = base + "/oauth2/token"
# Authlib reads a PEM string as RSA: hand it the EC key object.
key = ECKey.import_key(open("client-key.pem").read())
s = OAuth2Session("keyed", key, token_endpoint_auth_method="private_key_jwt", scope="orders:read")
s.register_client_auth_method(PrivateKeyJWT(endpoint, alg="ES256"))
tok = s.fetch_token(endpoint, grant_type="client_credentials", verify=ca)
claims = jwt.decode(tok["access_token"], options={"verify_signature": False})
print(json.dumps({"token_type": tok["token_type"], "sub": claims["sub"]}))
"#;

/// Authlib's authorization-code flow with PKCE (S256) and a nonce; the
/// "browser" is a requests session that fills in Ward's login form; the ID
/// token is checked by PyJWT; then Authlib refreshes the token.
const AUTH_CODE: &str = r#"
import json, re, ssl, sys
import jwt, requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.base_client.errors import OAuthError
from authlib.common.security import generate_token
base, ca, secret, password = sys.argv[1:5]
redirect = "http://127.0.0.1:8400/cb"
s = OAuth2Session("webapp", secret, scope="openid orders:read", redirect_uri=redirect, code_challenge_method="S256")

def login(s=s):
    verifier = generate_token(48)
    uri, state = s.create_authorization_url(base + "/oauth2/authorize", code_verifier=verifier, nonce="n-4711")
    browser = requests.Session()
    page = browser.get(uri, verify=ca)
    assert page.status_code == 200, page.text
    ticket = re.search(r'name="ticket" value="([^"]+)"', page.text).group(1)
    answer = browser.post(base + "/oauth2/authorize", data={"ticket": ticket, "username": "alice", "password": password},
                          allow_redirects=False, verify=ca)
    assert answer.status_code == 303, answer.text
    location = answer.headers["Location"]
    tok = s.fetch_token(base + "/oauth2/token", authorization_response=location, state=state, code_verifier=verifier,
                        verify=ca)
    return location, tok

def refreshes(token):
    try:
        s.refresh_token(base + "/oauth2/token", refresh_token=token, verify=ca)
        return "refreshed"
    except OAuthError as e:
        return e.error

location, tok = login()
jwks = jwt.PyJWKClient(base + "/.well-known/jwks.json", ssl_context=ssl.create_default_context(cafile=ca))
id_claims = jwt.decode(tok["id_token"], jwks.get_signing_key_from_jwt(tok["id_token"]).key, algorithms=["RS256"],
                       audience="webapp", issuer=base)
access = jwt.decode(tok["access_token"], jwks.get_signing_key_from_jwt(tok["access_token"]).key, algorithms=["EdDSA"],
                    audience="orders", issuer=base)
fresh = s.refresh_token(base + "/oauth2/token", refresh_token=tok["refresh_token"], verify=ca)
# RFC 7662 and RFC 7009 through Authlib: the live refresh token is reported as
# one to its client; revoking it ends the family (it no longer refreshes).
seen = s.introspect_token(base + "/oauth2/introspect", token=fresh["refresh_token"], verify=ca).json()
revoked = s.revoke_token(base + "/oauth2/revoke", token=fresh["refresh_token"], token_type_hint="refresh_token",
                         verify=ca)
after = s.introspect_token(base + "/oauth2/introspect", token=fresh["refresh_token"], verify=ca).json()
# Two more families, for the CLI: one revoked by `ward token revoke`, one ended by `ward user passwd`.
_, second = login()
_, third = login()
# RFC 8693 through Authlib: the client's own access token is exchanged; its ID
# token, declared as an access token, is refused (its `aud` is this client).
def exchange(subject):
    try:
        t = s.fetch_token(base + "/oauth2/token", grant_type="urn:ietf:params:oauth:grant-type:token-exchange",
                          subject_token=subject, subject_token_type="urn:ietf:params:oauth:token-type:access_token",
                          scope="orders:read", verify=ca)
        return t.get("issued_token_type", "issued")
    except OAuthError as e:
        return e.error
exchanged = {"access_token": exchange(second["access_token"]), "id_token": exchange(second["id_token"])}
# A public client (no secret: token_endpoint_auth_method=none) with PKCE, on a
# loopback redirect URI with a port of its own choosing (RFC 8252 §7.3).
native = OAuth2Session("native", scope="openid orders:read", redirect_uri="http://127.0.0.1:47913/cb",
                       code_challenge_method="S256", token_endpoint_auth_method="none")
native_location, native_tok = login(native)
native_fresh = native.refresh_token(base + "/oauth2/token", refresh_token=native_tok["refresh_token"], verify=ca)
public = {"location": native_location.split("?")[0], "aud": jwt.decode(native_tok["id_token"],
          jwks.get_signing_key_from_jwt(native_tok["id_token"]).key, algorithms=["RS256"], audience="native",
          issuer=base)["aud"], "rotated": native_fresh["refresh_token"] != native_tok["refresh_token"]}
print(json.dumps({"location": location.split("?")[0], "id": id_claims, "access": access,
                  "rotated": fresh["refresh_token"] != tok["refresh_token"], "fresh_type": fresh["token_type"],
                  "seen": seen, "revoke_status": revoked.status_code, "refresh_after_revoke": refreshes(fresh["refresh_token"]),
                  "after": after, "fresh_access": fresh["access_token"],
                  "second": second, "third": third, "exchanged": exchanged, "public": public}))
"#;

fn write_config(dir: &Path, port: u16) {
    let pki = ward_pki::generate_local_pki("Interop CA", &["localhost", "127.0.0.1"]).unwrap();
    common::write_gateway_files(dir, &pki);
    common::write_private(&dir.join("admin.token"), b"interop-admin-token-0123456789abcdef0123456789\n");
    std::fs::write(dir.join("jwks.json"), r#"{"keys":[]}"#).unwrap();
    let head = common::gateway_toml("127.0.0.1:0");
    let config = format!(
        r#"
{head}[control]
listen = "127.0.0.1:{port}"
issuer = "https://localhost:{port}"
admin_token_file = "admin.token"
[[providers]]
name = "p"
issuer = "https://issuer.test"
audiences = ["a"]
jwks_file = "jwks.json"
[[upstreams]]
name = "u"
url = "http://127.0.0.1:9"
[[routes]]
name = "r"
prefix = "/"
upstream = "u"
"#
    );
    std::fs::write(dir.join("ward.toml"), config).unwrap();
}

fn ward(dir: &Path, args: &[&str]) -> std::process::Output {
    common::ward_cli(dir, args)
}

#[test]
fn authlib_pyjwt_and_the_cli_against_ward_control() {
    let dir = tempfile::tempdir().unwrap();
    // `ward control` binds the port itself: take a free one from the kernel first.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    write_config(dir.path(), port);
    let _control = common::ControlProcess::start(dir.path(), port);

    let cfg = ["--config", "ward.toml", "--ca", "ca.crt"];
    let out = ward(
        dir.path(),
        &[
            &[
                "client",
                "create",
                "--id",
                "billing",
                "--scope",
                "orders:read",
                "--audience",
                "orders",
                "--role",
                "biller",
            ][..],
            &cfg[..],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let secret = text.lines().find_map(|l| l.strip_prefix("client_secret=")).unwrap().to_owned();
    let listed = ward(dir.path(), &[&["client", "list"][..], &cfg[..]].concat());
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains("\"client_id\":\"billing\"") && !listed.contains(&secret), "{listed}");
    // The admin API wants the admin token.
    let no_token = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", "ca.crt"])
        .arg(format!("https://localhost:{port}/admin/clients"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&no_token.stdout), "401");

    let base = format!("https://localhost:{port}");
    let py = python()
        .args(["-c", SCRIPT, &base, dir.path().join("ca.crt").to_str().unwrap(), "billing", &secret])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    let v: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    for method in ["client_secret_basic", "client_secret_post"] {
        assert_eq!(v[method]["token_type"], "Bearer", "{method}: {v}");
        assert_eq!(v[method]["scope"], "orders:read");
    }
    assert_eq!(v["claims"]["sub"], "billing");
    assert_eq!(v["claims"]["aud"], "orders");
    assert_eq!(v["claims"]["roles"], serde_json::json!(["biller"]));
    assert_eq!(v["wrong_secret"], "invalid_client");

    // private_key_jwt: Python makes the key pair, Ward gets only the public
    // JWK (`ward client create --jwks`), Authlib signs the assertions.
    let keygen = python().args(["-c", KEYGEN]).current_dir(dir.path()).output().unwrap();
    assert!(keygen.status.success(), "{}", String::from_utf8_lossy(&keygen.stderr));
    let out = ward(
        dir.path(),
        &[
            &[
                "client",
                "create",
                "--id",
                "keyed",
                "--scope",
                "orders:read",
                "--audience",
                "orders",
                "--jwks",
                "client-pub.json",
            ][..],
            &cfg[..],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("client_secret"));
    let py = python()
        .args(["-c", PRIVATE_KEY_JWT, &base, dir.path().join("ca.crt").to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    let v: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(v["token_type"], "Bearer", "{v}");
    assert_eq!(v["sub"], "keyed");

    // Users for the login page: the password comes from stdin, never argv.
    let mut user = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args([&["user", "create", "--name", "alice", "--role", "reader"][..], &cfg[..]].concat())
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        user.stdin.take().unwrap().write_all(b"correct horse battery staple\n").unwrap();
    }
    let out = user.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "created user alice\n");

    // Authorization code + PKCE with Authlib, for a client registered with a redirect URI.
    let out = ward(
        dir.path(),
        &[
            &[
                "client",
                "create",
                "--id",
                "webapp",
                "--grant",
                "authorization_code",
                "--grant",
                "refresh_token",
                "--grant",
                "urn:ietf:params:oauth:grant-type:token-exchange",
                "--scope",
                "orders:read",
                "--audience",
                "orders",
                "--redirect-uri",
                "http://127.0.0.1:8400/cb",
            ][..],
            &cfg[..],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let web_secret = text.lines().find_map(|l| l.strip_prefix("client_secret=")).unwrap().to_owned();
    let native = [
        "client",
        "create",
        "--id",
        "native",
        "--public",
        "--grant",
        "authorization_code",
        "--grant",
        "refresh_token",
        "--scope",
        "orders:read",
        "--audience",
        "orders",
        "--redirect-uri",
        "http://127.0.0.1/cb",
    ];
    let out = ward(dir.path(), &[&native[..], &cfg[..]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("client_secret"), "a public client has no secret");
    let py = python()
        .args([
            "-c",
            AUTH_CODE,
            &base,
            dir.path().join("ca.crt").to_str().unwrap(),
            &web_secret,
            "correct horse battery staple",
        ])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    let v: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(v["location"], "http://127.0.0.1:8400/cb");
    assert_eq!((v["id"]["sub"].as_str(), v["id"]["nonce"].as_str()), (Some("alice"), Some("n-4711")), "{v}");
    assert_eq!(
        (v["access"]["sub"].as_str(), v["access"]["scope"].as_str()),
        (Some("alice"), Some("openid orders:read"))
    );
    assert_eq!(v["access"]["roles"], serde_json::json!(["reader"]), "the user's roles, for policies");
    assert_eq!((v["rotated"].as_bool(), v["fresh_type"].as_str()), (Some(true), Some("Bearer")));
    // Refresh-token introspection and revocation through Authlib (RFC 7662, RFC 7009 §2).
    assert_eq!(
        (v["seen"]["active"].as_bool(), v["seen"]["token_use"].as_str(), v["seen"]["sub"].as_str()),
        (Some(true), Some("refresh_token"), Some("alice")),
        "{v}"
    );
    assert_eq!(v["revoke_status"], 200);
    assert_eq!(v["refresh_after_revoke"], "invalid_grant", "a revoked refresh token no longer refreshes");
    assert_eq!(v["after"], serde_json::json!({"active": false}));
    // A public client with PKCE through Authlib, on a loopback port of its choosing.
    assert_eq!(
        v["public"],
        serde_json::json!({"location": "http://127.0.0.1:47913/cb", "aud": "native", "rotated": true}),
        "{v}"
    );
    // Token exchange: an access token is, an ID token never is.
    assert_eq!(
        v["exchanged"],
        serde_json::json!({"access_token": "urn:ietf:params:oauth:token-type:access_token", "id_token": "invalid_grant"})
    );

    // Tokens through the CLI: issue, introspect, revoke (tokens go through stdin, never argv).
    let issued = ward(dir.path(), &[&["token", "issue", "--client", "billing"][..], &cfg[..]].concat());
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    let token = String::from_utf8(issued.stdout).unwrap();
    assert_eq!(token.trim().split('.').count(), 3, "{token}");
    let piped = |args: &[&str], input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
            .args([args, &cfg[..]].concat())
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    };
    let seen = piped(&["token", "introspect"], &token);
    let seen: serde_json::Value = serde_json::from_slice(&seen.stdout).unwrap();
    assert_eq!((seen["active"].as_bool(), seen["sub"].as_str()), (Some(true), Some("billing")), "{seen}");
    let revoked = piped(&["token", "revoke"], &token);
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    assert!(
        String::from_utf8_lossy(&revoked.stdout).starts_with(&format!("revoked {}", seen["jti"].as_str().unwrap()))
    );
    let after: serde_json::Value = serde_json::from_slice(&piped(&["token", "introspect"], &token).stdout).unwrap();
    assert_eq!(after["active"], false);
    // The access token of the family Authlib revoked went with it.
    let gone: serde_json::Value =
        serde_json::from_slice(&piped(&["token", "introspect"], v["fresh_access"].as_str().unwrap()).stdout).unwrap();
    assert_eq!(gone["active"], false, "the family's access token is revoked with it");
    // `ward token revoke` takes a refresh token: its family ends.
    let (second_refresh, second_access) =
        (v["second"]["refresh_token"].as_str().unwrap(), v["second"]["access_token"].as_str().unwrap());
    let seen: serde_json::Value =
        serde_json::from_slice(&piped(&["token", "introspect"], second_refresh).stdout).unwrap();
    assert_eq!((seen["active"].as_bool(), seen["token_use"].as_str()), (Some(true), Some("refresh_token")), "{seen}");
    let revoked = piped(&["token", "revoke"], second_refresh);
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    assert!(String::from_utf8_lossy(&revoked.stdout).starts_with("revoked refresh token family"));
    for t in [second_refresh, second_access] {
        let after: serde_json::Value = serde_json::from_slice(&piped(&["token", "introspect"], t).stdout).unwrap();
        assert_eq!(after["active"], false, "the family and its access token end");
    }
    // `ward user passwd` ends every family the old password opened.
    let (third_refresh, third_access) =
        (v["third"]["refresh_token"].as_str().unwrap(), v["third"]["access_token"].as_str().unwrap());
    let seen: serde_json::Value =
        serde_json::from_slice(&piped(&["token", "introspect"], third_refresh).stdout).unwrap();
    assert_eq!(seen["active"], true);
    let passwd = piped(&["user", "passwd", "--name", "alice"], "another horse battery staple\n");
    assert!(passwd.status.success(), "{}", String::from_utf8_lossy(&passwd.stderr));
    for t in [third_refresh, third_access] {
        let after: serde_json::Value = serde_json::from_slice(&piped(&["token", "introspect"], t).stdout).unwrap();
        assert_eq!(after["active"], false, "a password change ends the user's tokens");
    }
    let over =
        ward(dir.path(), &[&["token", "issue", "--client", "billing", "--scope", "admin"][..], &cfg[..]].concat());
    assert!(!over.status.success(), "the client's limits hold for operators too");

    // Rotation through the CLI; the new key is published at once.
    let rotated = ward(dir.path(), &[&["keys", "rotate"][..], &cfg[..]].concat());
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let deleted = ward(dir.path(), &[&["client", "delete", "billing"][..], &cfg[..]].concat());
    assert!(deleted.status.success());
}

/// PyJWT makes a key pair and mints a token; Ward's gateway is configured
/// to trust the public key (a JWK set file) and accepts the token; once the
/// key is removed from the file, the same token is refused — also from the
/// verified-token cache, which is tied to the key generation.
const MINT: &str = r#"
import json, sys, time
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
def pair(kid):
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, alg="ES256", use="sig")
    return key, jwk
trusted, trusted_jwk = pair("py-trusted")
stranger, _ = pair("py-stranger")
json.dump({"keys": [trusted_jwk]}, open("trusted.json", "w"))
now = int(time.time())
claims = {"iss": "https://minted.test", "sub": "py-svc", "aud": "orders", "iat": now, "exp": now + 300, "jti": "py-1"}
print(json.dumps({
    "trusted": jwt.encode(claims, trusted, algorithm="ES256", headers={"kid": "py-trusted"}),
    "stranger": jwt.encode(claims, stranger, algorithm="ES256", headers={"kid": "py-trusted"}),
}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_trusts_pyjwt_tokens_only_while_their_key_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let minted = python().args(["-c", MINT]).current_dir(d).output().unwrap();
    assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
    let tokens: serde_json::Value = serde_json::from_slice(&minted.stdout).unwrap();
    let pki = ward_pki::generate_local_pki("Minted CA", &["localhost"]).unwrap();
    common::write_gateway_files(d, &pki);
    let (up, hits) = common::start_upstream().await;
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::write(
        d.join("policies/api.yaml"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: api}\nspec:\n  selector: {matchLabels: {ward.dev/route: api}}\n  rules:\n  - from: [{source: {requestPrincipals: [\"https://minted.test/py-svc\"]}}]\n",
    )
    .unwrap();
    let head = common::gateway_toml("127.0.0.1:0");
    std::fs::write(
        d.join("ward.toml"),
        format!(
            r#"
{head}[authn]
cache_entries = 1000
[[providers]]
name = "python"
issuer = "https://minted.test"
audiences = ["orders"]
jwks_file = "trusted.json"
jwks_refresh_interval = "1s"
[[upstreams]]
name = "app"
url = "http://{up}"
[[routes]]
name = "api"
prefix = "/api/"
upstream = "app"
"#
        ),
    )
    .unwrap();
    let config = ward_config::load(&d.join("ward.toml")).unwrap();
    let gateway = ward_gateway::Gateway::bind_with(&config, None).await.unwrap();
    let port = gateway.local_addr().unwrap().port();
    let running = gateway.spawn().unwrap();
    let client = common::client(&pki.ca.cert_pem);
    let call = |token: String| {
        let client = client.clone();
        async move {
            client
                .get(format!("https://localhost:{port}/api/x"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let trusted = tokens["trusted"].as_str().unwrap().to_owned();
    assert_eq!(call(trusted.clone()).await, 200, "a PyJWT token signed with the configured key");
    assert_eq!(call(trusted.clone()).await, 200, "again, now from the cache");
    assert_eq!(call(tokens["stranger"].as_str().unwrap().to_owned()).await, 401, "another key under the same kid");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);

    // Remove the key: within a refresh interval the token is refused.
    std::fs::write(d.join("trusted.json"), r#"{"keys":[]}"#).unwrap();
    let removed = std::time::Instant::now();
    let mut status = 200;
    while status == 200 && removed.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = call(trusted.clone()).await;
    }
    assert_eq!(status, 401, "refused once the key is gone (after {:?})", removed.elapsed());
    running.shutdown().await;
    let reasons: Vec<String> =
        common::read_log(&d.join("audit")).iter().filter_map(|r| r["reason"].as_str().map(str::to_owned)).collect();
    assert!(reasons.iter().any(|r| r == "token_bad_signature"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "token_unknown_key"), "{reasons:?}");
}
