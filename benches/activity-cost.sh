#!/usr/bin/env bash
# What activity matching costs a proxied request (issue #9: at most 5 % in
# the peer benchmark's keep-alive case). socialgate with the shipped
# signatures (policies/activities.yaml beside benches/loopback-policy)
# against the same policy without them, alternating A/B rounds in one run,
# 64 keep-alive connections through wrk, JSON access log on in both.
#
#   cargo build --release && benches/activity-cost.sh       # ~3 min
#
# The requests go to platform hosts, pinned to the local nginx origin with
# `--resolve`, so the classifier runs on them:
#   facebook-get   GET http://www.facebook.com:PORT/1k (Facebook has a GET
#                  signature, so its path set runs on every read)
#   linkedin-post  POST .../voyager/api/graphql?action=execute&queryId=
#                  voyagerContentcreationDashShares.<hash> (path set, query
#                  scan, operation set: recognised as `post`); the static
#                  origin answers 405, the same for both builds
#
# Knobs: ROUNDS=5 DURATION=5 C=64 CASES="facebook-get linkedin-post".
# Everything binds to 127.0.0.1; every process started here is stopped by
# its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-../shared/bench}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
C=${C:-64}
CASES=${CASES:-"facebook-get linkedin-post"}
ORIGIN_PORT=${ORIGIN_PORT:-18094}
PROXY_PORT=${PROXY_PORT:-18214}
BIN=${BIN:-target/release/socialgate}
. benches/lib.sh
bench_begin actcost
start_origin "$ORIGIN_PORT"
mkdir -p "$RUN/off" "$RUN/on"
cp benches/loopback-policy/*.yaml "$RUN/off/"
cp benches/loopback-policy/*.yaml policies/activities.yaml "$RUN/on/"

# wrk: the absolute-form URL and method from the environment, one BENCH line.
cat > "$RUN/req.lua" <<'LUA'
wrk.method = os.getenv("METHOD")
wrk.path = os.getenv("URL")
wrk.headers["Host"] = os.getenv("URL"):match("^%a+://([^/]+)")
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d non2xx=%d err=%d\n", summary.requests, e.status,
    e.connect + e.read + e.write + e.timeout))
end
LUA

url_of() {
  case $1 in
    facebook-get) echo "GET http://www.facebook.com:$ORIGIN_PORT/1k" ;;
    linkedin-post) echo "POST http://www.linkedin.com:$ORIGIN_PORT/voyager/api/graphql?action=execute&queryId=voyagerContentcreationDashShares.279996efa5064c01775d5aff003d9377" ;;
  esac
}

measure() { # measure CASE VARIANT -> one TSV line
  local case=$1 variant=$2 method url
  read -r method url < <(url_of "$case")
  taskset -c 1 "$BIN" run --listen "127.0.0.1:$PROXY_PORT" --admin off --policy "$RUN/$variant" \
    --pseudonym-key "$RUN/key" --access-log "$RUN/access.log" \
    --resolve www.facebook.com=127.0.0.1,www.linkedin.com=127.0.0.1 2>/dev/null &
  local pid=$!; pids+=("$pid")
  wait_proxy "$PROXY_PORT"
  METHOD=$method URL=$url timeout 30 taskset -c 0 wrk -t1 -c"$C" -d2 -s "$RUN/req.lua" "http://127.0.0.1:$PROXY_PORT" >/dev/null
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  local out
  out=$(METHOD=$method URL=$url timeout $((DURATION + 20)) taskset -c 0 wrk -t1 -c"$C" -d"$DURATION" \
    -s "$RUN/req.lua" "http://127.0.0.1:$PROXY_PORT" | grep BENCH)
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # The activity the log recorded for these requests (one line is enough).
  local act
  act=$(tail -n 1 "$RUN/access.log" | python3 -c 'import json,sys; e=json.loads(sys.stdin.read()); print(e.get("activity"), e.get("signature"))' 2>/dev/null || echo "?")
  rm -f "$RUN/access.log"
  local req=${out#*requests=}; req=${req%% *}
  python3 - "$case" "$variant" "$req" "$DURATION" "$((u1 - u0 + s1 - s0))" "$(getconf CLK_TCK)" "$out" "$act" <<'PY'
import sys
case, variant, req, dur, ticks, hz, out, act = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], sys.argv[8]
print(f"{case}\t{variant}\t{req/dur:.0f}\t{ticks/hz*1e6/req:.1f}\t{act}\t{out.split(' ', 2)[2]}")
PY
}

echo -e "case\tsignatures\treq/s\tproxy µs/req\tlogged activity\tother" > "$RUN/results.tsv"
for r in $(seq "$ROUNDS"); do
  for c in $CASES; do
    measure "$c" off >> "$RUN/results.tsv"
    measure "$c" on >> "$RUN/results.tsv"
  done
done
cat "$RUN/results.tsv"
python3 - "$RUN/results.tsv" "$CASES" <<'PY'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
for case in sys.argv[2].split():
    med = lambda v, i: statistics.median(float(r[i]) for r in rows if r[0] == case and r[1] == v)
    off, on = med("off", 2), med("on", 2)
    print(f"{case}: median req/s off {off:.0f}, on {on:.0f} ({100 * (off - on) / off:+.1f}% slower); "
          f"proxy CPU off {med('off', 3):.1f}, on {med('on', 3):.1f} µs/req")
PY
