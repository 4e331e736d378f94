#!/usr/bin/env bash
# New and resumed mTLS handshakes per second, side by side in one run: Ward's
# gateway ([gateway.mtls] STRICT, SPIFFE verification), nginx
# (ssl_verify_client on) and HAProxy (verify required), each with one worker
# pinned to cpu1, all verifying the same client SVID against the same CA.
# The client is `openssl s_time` pinned to cpu0 (it does only handshakes, no
# HTTP). The servers' CPU time per handshake is printed too: steadier than
# the rate on a shared machine.
#
#   cargo build --release && bash bench/mtls-handshakes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WARD=${WARD:-$PWD/target/release/ward}
DURATION=${DURATION:-10}
REPEAT=${REPEAT:-3}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"

# The PKI, made with OpenSSL so no server uses Ward's code to read it: a root,
# an intermediate, a server certificate for localhost and a client SVID.
ec() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }
ec root.key; ec int.key; ec server.key; ec client.key
openssl req -x509 -new -key root.key -subj "/O=Bench/CN=root" -days 2 -out root.crt \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:1" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -new -key int.key -subj "/O=Bench/CN=intermediate" -out int.csr 2>/dev/null
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign\nsubjectAltName=URI:spiffe://bench.example\n' >int.ext
openssl x509 -req -in int.csr -CA root.crt -CAkey root.key -CAcreateserial -days 2 -extfile int.ext -out int.crt 2>/dev/null
openssl req -new -key server.key -subj "/CN=localhost" -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
openssl x509 -req -in server.csr -CA root.crt -CAkey root.key -CAcreateserial -days 2 -extfile server.ext -out server.crt 2>/dev/null
openssl req -new -key client.key -subj "/O=Bench" -out client.csr 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=URI:spiffe://bench.example/client\n' >client.ext
openssl x509 -req -in client.csr -CA int.crt -CAkey int.key -CAcreateserial -days 2 -extfile client.ext -out client.crt 2>/dev/null
# s_time sends the leaf only: every server trusts root and intermediate.
cat root.crt int.crt >bundle.pem
cat server.crt server.key >server.pem
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Ward
wport=$(port)
mkdir -p policies audit
head -c 32 /dev/urandom >audit.key && chmod 600 audit.key server.key
"$WARD" audit keygen --out checkpoint.key >/dev/null 2>&1
printf 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: all}\nspec:\n  rules:\n  - {}\n' >policies/all.yaml
cat >ward.toml <<EOF
[gateway]
listen = "127.0.0.1:$wport"
worker_threads = 1
[gateway.tls]
cert_file = "server.crt"
key_file = "server.key"
[gateway.mtls]
mode = "STRICT"
bundle_file = "bundle.pem"
trust_domain = "bench.example"
[audit]
dir = "audit"
hmac_key_file = "audit.key"
checkpoint_key_file = "checkpoint.key"
[[upstreams]]
name = "echo"
url = "builtin:echo"
[[routes]]
name = "all"
prefix = "/"
upstream = "echo"
public = true
EOF
WARD_LOG=warn taskset -c 1 "$WARD" gateway --config ward.toml >ward.log 2>&1 &
pids+=($!); ward_pid=$!

# nginx
nport=$(port)
cat >nginx.conf <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  ssl_session_cache shared:SSL:10m;
  ssl_session_tickets on;
  server {
    listen 127.0.0.1:$nport ssl;
    ssl_certificate $work/server.crt;
    ssl_certificate_key $work/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_client_certificate $work/bundle.pem;
    ssl_verify_client on;
    ssl_verify_depth 2;
    location / { return 200 "ok"; }
  }
}
EOF
taskset -c 1 nginx -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)

# HAProxy
hport=$(port)
cat >haproxy.cfg <<EOF
global
  nbthread 1
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend mtls
  bind 127.0.0.1:$hport ssl crt $work/server.pem ca-file $work/bundle.pem verify required
  http-request return status 200 content-type text/plain string ok
EOF
taskset -c 1 haproxy -f haproxy.cfg &
pids+=($!)

for p in $wport $nport $hport; do
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
done
sleep 0.5
pid_of() { case $1 in ward) echo "$ward_pid" ;; nginx) pgrep -f "nginx: worker process" | head -1 ;; haproxy) pgrep -x haproxy | tail -1 ;; esac; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

printf '| server | mode | handshakes/s (each round) | server CPU µs/handshake |\n|---|---|---|---|\n'
for mode in new reuse; do
  for server in ward nginx haproxy; do
    case $server in ward) p=$wport ;; nginx) p=$nport ;; haproxy) p=$hport ;; esac
    rates=(); cpus=()
    for _ in $(seq "$REPEAT"); do
      spid=$(pid_of $server); before=$(ticks "$spid")
      # Resumption is timed on TLS 1.2 (session tickets): s_time does not resume TLS 1.3 sessions.
      version=$([ "$mode" = reuse ] && echo -tls1_2 || echo -tls1_3)
      out=$(taskset -c 0 openssl s_time -connect "127.0.0.1:$p" -$mode $version -cert client.crt -key client.key -time "$DURATION" 2>&1)
      used=$(($(ticks "$spid") - before))
      if ! echo "$out" | grep -q "connections in" || echo "$out" | grep -qi "error"; then
        echo "$server $mode: s_time failed: $out" >&2
        exit 1
      fi
      n=$(echo "$out" | awk '/connections in/ {print $1; exit}')
      rates+=("$(awk -v n="$n" -v d="$DURATION" 'BEGIN {printf "%.0f", n / d}')")
      cpus+=("$(awk -v t="$used" -v hz="$hz" -v n="$n" 'BEGIN {printf "%.1f", n ? t / hz * 1e6 / n : 0}')")
    done
    printf '| %s | %s | %s | %s |\n' "$server" "$mode" "${rates[*]}" "${cpus[*]}"
  done
done
