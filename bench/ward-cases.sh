# shellcheck shell=bash disable=SC2154
# Ward as cases E and E_cache of ../shared/bench/anchors.sh (sourced by it).
#
#   cargo build --release
#   cd ../shared/bench
#   GW_BIN=$PWD/../../main/target/release/ward EXTRA_CASES=$PWD/../../main/bench/ward-cases.sh \
#     PIN_WRK=0 PIN_PROXY=1 PIN_UPSTREAM=1 REPEAT=3 ./anchors.sh
#
# Same work as HAProxy's case D: TLS 1.3 with the harness's ECDSA P-256
# certificate, ES256 pinned by configuration to the harness key (kid k1),
# iss/aud/exp checked, only GET under /api/ allowed, keep-alive to the same
# upstream. Unlike D, Ward also appends one record per request to its
# tamper-evident audit log (group commit, fdatasync per batch) and answers
# only once that record is durable. E verifies every signature; E_cache
# turns on the verified-token cache.

: "${GW_BIN:?set GW_BIN to target/release/ward}"
[[ -x $GW_BIN ]] || die "GW_BIN=$GW_BIN is not executable"

register_case E "Ward: TLS + ES256 JWT + iss/aud/exp + GET /api/ policy + audit record per request"
register_case E_cache "Ward as E, with the verified-token cache"

ward_config() { # DIR PORT CACHE_ENTRIES
  local d=$1 port=$2 cache=$3
  mkdir -p "$d"
  head -c 32 /dev/urandom >"$d/audit.key"
  chmod 600 "$d/audit.key"
  [[ -f $d/checkpoint.key ]] || "$GW_BIN" audit keygen --out "$d/checkpoint.key" --name ward.bench/audit >/dev/null
  cat >"$d/ward.toml" <<EOC
[gateway]
listen = "127.0.0.1:$port"
worker_threads = $PROXY_THREADS
[gateway.tls]
cert_file = "$SRV_CERT"
key_file = "$SRV_KEY"
[gateway.limits]
max_connections = 4096
[audit]
dir = "$d/audit"
hmac_key_file = "$d/audit.key"
checkpoint_key_file = "$d/checkpoint.key"
commit_interval = "${WARD_COMMIT_INTERVAL:-1ms}"
danger_async = ${WARD_DANGER_ASYNC:-false}
[authn]
cache_entries = $cache
[[providers]]
name = "bench"
issuer = "https://issuer.test"
audiences = ["orders"]
[[providers.keys]]
kid = "k1"
alg = "ES256"
public_key_file = "$JWT_PUB"
[[upstreams]]
name = "nginx"
url = "$UPSTREAM_URL"
max_idle_per_host = 256
[[routes]]
name = "api"
prefix = "/api/"
upstream = "nginx"
[policy]
dir = "$d/policies"
EOC
  mkdir -p "$d/policies"
  cat >"$d/policies/api.yaml" <<'EOP'
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api-get}
spec:
  selector: {matchLabels: {ward.dev/route: api}}
  rules:
  - to: [{operation: {methods: [GET]}}]
EOP
}

ward_case() { # NAME PORT CACHE_ENTRIES
  local name=$1 port=$2 cache=$3 d=$WORK/ward-$1
  ward_config "$d" "$port" "$cache"
  "$GW_BIN" check-config "$d/ward.toml" >&2 || { record_fail "$name" "config rejected"; return 0; }
  export WARD_LOG=warn
  start_proxy "$name" "$port" "$GW_BIN" gateway --config "$d/ward.toml" || return 0
  tls_info "$name" "$port"
  if check_authz "$name" "https://127.0.0.1:$port"; then
    run_case "$name" "https://127.0.0.1:$port$PATH_REQ" "$name"
    log "$name: audit log: $("$GW_BIN" audit verify --config "$d/ward.toml" | head -n 1)"
  else
    record_fail "$name" "authn/authz matrix: $CHECK_FAILS failures"
  fi
  stop_bg "$name"
}

case_E() { ward_case E "$E_PORT" 0; }
case_E_cache() { ward_case E_cache "$((E_PORT + 1))" 10000; }
