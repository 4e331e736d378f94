# shellcheck shell=bash disable=SC2154
# A second Ward binary — the commit before a change to the request path — as
# cases B and B_cache of ../shared/bench/anchors.sh, beside E and E_cache
# (sourced after ward-cases.sh, whose configuration and measurement it
# reuses), so before and after are measured in one run, round by round:
#
#   git worktree add /tmp/before BASE && (cd /tmp/before && cargo build --release)
#   cd ../shared/bench
#   GW_BIN=$PWD/../../main/target/release/ward GW_BASELINE_BIN=/tmp/before/target/release/ward \
#     EXTRA_CASES=$PWD/../../main/bench/ward-cases.sh:$PWD/../../main/bench/ward-baseline-cases.sh \
#     CASES="E0 E E0_cache E_cache" PIN_WRK=0 PIN_PROXY=1 PIN_UPSTREAM=1 REPEAT=3 ./anchors.sh

: "${GW_BASELINE_BIN:?set GW_BASELINE_BIN to the baseline build of target/release/ward}"
[[ -x $GW_BASELINE_BIN ]] || die "GW_BASELINE_BIN=$GW_BASELINE_BIN is not executable"

register_case E0 "Ward baseline (GW_BASELINE_BIN) doing E's work"
register_case E0_cache "Ward baseline as E_cache"

# bash locals are seen by the functions called: ward_case runs the baseline.
case_E0() { local GW_BIN=$GW_BASELINE_BIN; ward_case E0 "$((E_PORT + 2))" 0; }
case_E0_cache() { local GW_BIN=$GW_BASELINE_BIN; ward_case E0_cache "$((E_PORT + 3))" 10000; }
