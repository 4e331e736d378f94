# shellcheck shell=bash disable=SC2154
# Legitimate clients under a brute-force flood, side by side in one run of
# ../shared/bench/anchors.sh (sourced by it, after bench/ward-cases.sh):
#
#   cargo build --release && cargo build --release --example flood
#   cd ../shared/bench
#   GW_BIN=$PWD/../../main/target/release/ward FLOOD_BIN=$PWD/../../main/target/release/examples/flood \
#     EXTRA_CASES=$PWD/../../main/bench/ward-cases.sh:$PWD/../../main/bench/flood-cases.sh \
#     CASES="W W_flood H H_flood" PIN_WRK=0 PIN_PROXY=1 PIN_UPSTREAM=1 REPEAT=3 ./anchors.sh
#
# The legitimate load is the harness's wrk (valid ES256 token, keep-alive,
# from 127.0.0.1). The flood (examples/flood.rs, pinned with wrk) sends
# requests with a tampered signature from 250 other loopback addresses
# (127.0.2.1-250), 32 connections at once, reconnecting whenever a
# connection is refused, at most FLOOD_RATE (3000) new connections a second
# in all, so both servers face the same flood. Both servers verify the signature and ban an
# address after 20 bad tokens within 10 s, then refuse its connections
# before TLS:
#   W  Ward as case E, plus [detect]: the default `ward/token-abuse`
#      scenario (20 bad tokens, one leaks per 10 s) blocks the address,
#      enforced at accept.
#   H  HAProxy as case D, plus a stick table: gpc0 counts bad tokens per
#      source, gpc0_rate(10s) > 20 sets gpc1, `tcp-request connection
#      reject` refuses new connections of sources with gpc1 set and
#      `http-request reject` closes their open ones (as Ward answers a
#      blocked address's next request on a kept-alive connection with 403
#      and closes it).
# W and H are the same servers without the flood. Compare p99 of W with
# W_flood and of H with H_flood (and the gateway CPU per legitimate request).

: "${GW_BIN:?set GW_BIN to target/release/ward}"
: "${FLOOD_BIN:?set FLOOD_BIN to target/release/examples/flood}"
[[ -x $FLOOD_BIN ]] || die "FLOOD_BIN=$FLOOD_BIN is not executable (cargo build --release --example flood)"
declare -F ward_config >/dev/null || die "flood-cases.sh needs bench/ward-cases.sh listed before it in EXTRA_CASES"

W_PORT=$((BASE_PORT + 10))
H_PORT=$((BASE_PORT + 11))
FLOOD_SOURCES=${FLOOD_SOURCES:-127.0.2.1-250}
FLOOD_CONNS=${FLOOD_CONNS:-32}
# New flood connections per second, the same for both servers (0: as fast as
# each server lets them; the faster one to refuse then gets the bigger flood).
FLOOD_RATE=${FLOOD_RATE:-3000}

register_case W "Ward as E + detection (token-abuse ban), legitimate load only"
register_case W_flood "Ward as W, under a bad-token flood from 250 addresses"
register_case H "HAProxy as D + stick-table ban, legitimate load only"
register_case H_flood "HAProxy as H, under the same flood"

flood_start() { # NAME PORT
  start_bg "flood-$1" "$PIN_WRK" "$FLOOD_BIN" --target "127.0.0.1:$2" --ca "$CA_PEM" \
    --token-file "$TOKENS_DIR/tampered_sig.jwt" --sources "$FLOOD_SOURCES" --conns "$FLOOD_CONNS" \
    --seconds "$((WARMUP + DURATION + 2))" --path "$PATH_REQ" --rate "$FLOOD_RATE"
  sleep 1 # the flood is on before the legitimate load starts
}

flood_stop() { # NAME
  local pid
  pid=$(pid_of "flood-$1")
  if [[ -n $pid ]]; then wait "$pid" 2>/dev/null || true; fi
  unset "PIDS[flood-$1]"
  log "$1: flood: $(tail -n 1 "$WORK/logs/flood-$1.log")"
}

# The started server NAME on PORT: the correctness matrix, then the
# measured run (with the flood on when FLOOD is 1), then stop it.
measure() { # NAME PORT FLOOD
  local name=$1 port=$2 flood=$3
  if check_authz "$name" "https://127.0.0.1:$port"; then
    if ((flood)); then flood_start "$name" "$port"; fi
    run_case "$name" "https://127.0.0.1:$port$PATH_REQ" "$name"
    if ((flood)); then flood_stop "$name"; fi
  else
    record_fail "$name" "authn/authz matrix: $CHECK_FAILS failures"
  fi
  stop_bg "$name"
  return 0
}

ward_flood_case() { # NAME PORT FLOOD
  local name=$1 port=$2 flood=$3 d=$WORK/ward-$1
  ward_config "$d" "$port" 0
  rm -rf "$d/audit" # blocks made are counted per run
  cat >>"$d/ward.toml" <<EOC
[detect]
state_file = "$d/detect.json"
block_duration = "1h"
EOC
  rm -f "$d/detect.json"
  "$GW_BIN" check-config "$d/ward.toml" >&2 || { record_fail "$name" "config rejected"; return 0; }
  export WARD_LOG=warn
  start_proxy "$name" "$port" "$GW_BIN" gateway --config "$d/ward.toml" || return 0
  measure "$name" "$port" "$flood"
  if ((flood)); then
    log "$name: blocks made: $("$GW_BIN" audit tail --config "$d/ward.toml" -n 1000000 | grep -c '"block_added"' || true)"
  fi
  return 0
}

haproxy_flood_case() { # NAME PORT FLOOD
  local name=$1 port=$2 flood=$3 d=$WORK/haproxy-$1
  mkdir -p "$d"
  cat >"$d/haproxy.cfg" <<EOF
global
    nbthread $PROXY_THREADS
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 60s
    option http-keep-alive
    http-reuse always

backend st_abuse
    stick-table type ip size 1m expire 1h store gpc0,gpc0_rate(10s),gpc1

backend be_up
    server up 127.0.0.1:$UP_PORT

frontend fe
    bind 127.0.0.1:$port ssl crt $SRV_PEM
    # banned sources are refused before TLS
    tcp-request connection reject if { src_get_gpc1(st_abuse) gt 0 }
    tcp-request connection track-sc0 src table st_abuse
    # ... and on connections opened before the ban, the next request closes them
    http-request reject if { sc0_get_gpc1 gt 0 }
    # ---- authentication as case D ----
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.jwt_alg) var(txn.bearer),jwt_header_query('\$.alg')
    http-request set-var(txn.jwt_kid) var(txn.bearer),jwt_header_query('\$.kid')
    http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
    http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('\$.aud')
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
    http-request set-var(txn.now) date()
    acl tok_found var(txn.bearer) -m found
    acl alg_ok var(txn.jwt_alg) -m str ES256
    acl kid_ok var(txn.jwt_kid) -m str k1
    acl sig_ok var(txn.bearer),jwt_verify("ES256","$JWT_PUB") -m int 1
    acl iss_ok var(txn.iss) -m str https://issuer.test
    acl aud_ok var(txn.aud) -m str orders
    acl exp_ok var(txn.exp),sub(txn.now) -m int gt 0
    # ---- a bad token counts; more than 20 in 10 s bans the source ----
    http-request sc-inc-gpc0(0) unless tok_found alg_ok kid_ok sig_ok iss_ok aud_ok exp_ok
    http-request sc-inc-gpc1(0) if { sc0_gpc0_rate gt 20 }
    http-request deny deny_status 401 unless tok_found alg_ok kid_ok sig_ok iss_ok aud_ok exp_ok
    http-request deny deny_status 403 unless { method GET } { path_beg /api/ }
    default_backend be_up
EOF
  haproxy -c -q -f "$d/haproxy.cfg" >&2 || { record_fail "$name" "invalid HAProxy config"; return 0; }
  start_proxy "$name" "$port" haproxy -db -f "$d/haproxy.cfg" || return 0
  measure "$name" "$port" "$flood"
}

case_W() { ward_flood_case W "$W_PORT" 0; }
case_W_flood() { ward_flood_case W_flood "$W_PORT" 1; }
case_H() { haproxy_flood_case H "$H_PORT" 0; }
case_H_flood() { haproxy_flood_case H_flood "$H_PORT" 1; }
