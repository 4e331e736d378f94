#!/usr/bin/env bash
# The token service's endpoints under load, as recorded in BENCHMARKS.md:
# `ward control` pinned to cpu1 (its own audit log: every token is released
# only once its issuance record is durable), wrk pinned to cpu0, 2 threads,
# 64 keep-alive TLS connections, 10 s each. LAYOUT=shared lets both share
# both cores instead (no pinning; the kernel places them).
#
#   cargo build --release && bash bench/token-endpoint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WARD=${WARD:-$PWD/target/release/ward}
DURATION=${DURATION:-10}
if [ "${LAYOUT:-pinned}" = shared ]; then server=(); client=(); else server=(taskset -c 1); client=(taskset -c 0); fi
work=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"

# A data directory as `ward up` writes it (stopped after it starts), then a free port for the control plane.
timeout 10 "$WARD" up --data-dir d --listen 127.0.0.1:0 --control-listen 127.0.0.1:0 >/dev/null 2>&1 || true
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -i "s/^listen = \"127.0.0.1:9443\"/listen = \"127.0.0.1:$port\"/" d/ward.toml
WARD_LOG=warn "${server[@]}" "$WARD" control --config d/ward.toml >control.log 2>&1 &
pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

secret=$("$WARD" client create --data-dir d --id bench --scope orders:read --audience orders | sed -n 's/^client_secret=//p')
auth=$(printf 'bench:%s' "$secret" | base64 -w0)
base="https://127.0.0.1:$port"
token=$(curl -s --cacert d/ca.crt -u "bench:$secret" -d grant_type=client_credentials "$base/oauth2/token" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

lua() { # BODY
  cat <<LUA
wrk.method = "POST"
wrk.body = "$1"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $auth"
LUA
}
lua "grant_type=client_credentials" >token.lua
lua "token=$token" >introspect.lua
# CPU time (user + system, all threads) the server spent, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
run() { # NAME SCRIPT PATH
  echo "== $1"
  local before out requests
  before=$(ticks)
  out=$("${client[@]}" wrk -t2 -c64 -d"${DURATION}s" -s "$2" "$base$3")
  echo "$out" | grep -E "Requests/sec|Latency|Non-2xx"
  # Server CPU per request: steadier than req/s on a shared machine.
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  awk -v t="$(($(ticks) - before))" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
    'BEGIN { printf "  server CPU: %.1f us/request\n", t / hz * 1e6 / n }'
}
run "token endpoint (client_credentials, EdDSA)" token.lua /oauth2/token
run "introspection" introspect.lua /oauth2/introspect
echo "RSS of ward control: $(ps -o rss= -p "$pid") KiB"
