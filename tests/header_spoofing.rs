//! Identity headers cannot be spoofed through a WSGI upstream (issue 17,
//! items 1 and 6). CGI and WSGI read a header `x_ward_principal` — or
//! `X-Ward_Principal` — as `HTTP_X_WARD_PRINCIPAL`, the very variable the
//! gateway's `x-ward-principal` becomes. Before the fix, names with `_`
//! reached the upstream: `x_ward_principal: admin` with a valid token of
//! alice's made the upstream see `HTTP_X_WARD_PRINCIPAL=alice,admin` (or
//! `admin` alone without a token on a public route). The upstream here is a
//! real one: Python's `wsgiref`, from the project's virtual environment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::BufRead;

use serde_json::Value;

/// Every variable `HTTP_*` of each request, as JSON.
const WSGI: &str = r#"
import json
from wsgiref.simple_server import make_server, WSGIRequestHandler

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

def app(environ, start):
    body = json.dumps({k: v for k, v in environ.items() if k.startswith("HTTP_")}).encode()
    start("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]

server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
print(server.server_port, flush=True)
server.serve_forever()
"#;

/// The WSGI upstream, killed when dropped.
struct Wsgi(std::process::Child, u16);

impl Wsgi {
    fn start() -> Self {
        let mut child =
            common::python(&["wsgiref"]).args(["-c", WSGI]).stdout(std::process::Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap();
        Self(child, port)
    }
}

impl Drop for Wsgi {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reserved names, each as a client might spell it with `_`, case and
/// mixed separators.
fn corpus() -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for name in [
        "x-ward-principal",
        "x-ward-issuer",
        "x-ward-roles",
        "x-ward-peer-spiffe-id",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-request-id",
    ] {
        out.push((name.replace('-', "_"), "spoofed"));
        out.push((name.to_uppercase().replace('-', "_"), "spoofed"));
        out.push((name.replacen('-', "_", 1), "spoofed"));
        if let Some(i) = name.rfind('-') {
            let mut mixed = name.to_owned();
            mixed.replace_range(i..=i, "_");
            out.push((mixed, "spoofed"));
        }
    }
    // Item 6: overrides frameworks act on, as sent and with `_`.
    for name in
        ["x-http-method-override", "x-original-url", "x-rewrite-url", "x-real-ip", "true-client-ip", "remote-user"]
    {
        out.push((name.to_owned(), "spoofed"));
        out.push((name.replace('-', "_"), "spoofed"));
    }
    out
}

async fn seen(h: &common::Harness, path: &str, token: Option<&str>, extra: &[(String, &str)]) -> (u16, Value) {
    let mut req = h.client.get(h.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (name, value) in extra {
        req = req.header(name.as_str(), *value);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_headers_spelled_with_underscores_never_reach_a_wsgi_upstream() {
    let wsgi = Wsgi::start();
    let upstream = format!("http://127.0.0.1:{}", wsgi.1);
    let h = start_with_mode(&upstream, "drop").await;
    let token = h.token(serde_json::json!({}));
    let spoofed = corpus();

    // Default (`drop`): every such header is removed; the identity the
    // upstream sees is the gateway's, exactly.
    let (status, env) = seen(&h, "/api/x", Some(&token), &spoofed).await;
    assert_eq!(status, 200, "{env}");
    assert_eq!(env["HTTP_X_WARD_PRINCIPAL"], "alice", "{env}");
    assert_eq!(env["HTTP_X_WARD_ROLES"], "reader", "{env}");
    assert_eq!(env["HTTP_X_FORWARDED_FOR"], "127.0.0.1", "{env}");
    assert!(!env.to_string().contains("spoofed"), "{env}");
    // Without a token, on a public route: no identity at all.
    let (status, env) = seen(&h, "/open/x", None, &spoofed).await;
    assert_eq!(status, 200, "{env}");
    assert!(env.get("HTTP_X_WARD_PRINCIPAL").is_none() && !env.to_string().contains("spoofed"), "{env}");
    // An ordinary header with `_` is dropped too (nginx's and Envoy's default).
    let (_, env) = seen(&h, "/open/x", None, &[("my_header".to_owned(), "v")]).await;
    assert!(env.get("HTTP_MY_HEADER").is_none(), "{env}");
    h.finish().await;

    // `reject`: 400; `allow`: kept, except names that read as the gateway's own.
    for (mode, want) in [("reject", 400), ("allow", 200)] {
        let h = start_with_mode(&upstream, mode).await;
        let (status, env) = seen(&h, "/api/x", Some(&h.token(serde_json::json!({}))), &spoofed).await;
        assert_eq!(status, want, "{mode}: {env}");
        if mode == "allow" {
            assert_eq!(env["HTTP_X_WARD_PRINCIPAL"], "alice", "{env}");
            assert!(!env.to_string().contains("spoofed"), "{env}");
            let (_, env) = seen(&h, "/open/x", None, &[("my_header".to_owned(), "v")]).await;
            assert_eq!(env["HTTP_MY_HEADER"], "v", "{env}");
        }
        h.finish().await;
    }
    drop(wsgi);
}

/// A public route `/open/` beside the harness's `/api/`.
const OPEN: &str = "[[routes]]\nname = \"open\"\nprefix = \"/open/\"\nupstream = \"app\"\npublic = true\n";
const OPEN_POLICY: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: open}\n\
spec:\n  selector: {matchLabels: {ward.dev/route: open}}\n  action: ALLOW\n  rules:\n  - {}\n";

/// The gateway in front of `upstream`, `[gateway.limits] headers_with_underscores = mode`.
async fn start_with_mode(upstream: &str, mode: &str) -> common::Harness {
    let limits = format!("headers_with_underscores = \"{mode}\"");
    common::start_custom(upstream, OPEN, &[("open.yaml", OPEN_POLICY)], &limits).await
}
