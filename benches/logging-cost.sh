#!/usr/bin/env bash
# What the access log costs: socialgate with the JSON access log on (file)
# versus off, alternating A/B rounds in one run, keep-alive 1 KiB GETs at
# 64 connections through wrk. Uses ../shared/bench's nginx origin config and
# wrk script; the proxy is pinned to CPU 1, wrk and nginx to CPU 0.
#
#   cargo build --release && benches/logging-cost.sh        # ~2 min
#
# Knobs: ROUNDS=3 DURATION=10 C=64. Everything binds to 127.0.0.1 and every
# process started here is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-../shared/bench}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
C=${C:-64}
ORIGIN_PORT=${ORIGIN_PORT:-18090}
PROXY_PORT=${PROXY_PORT:-18210}
. benches/lib.sh
bench_begin logcost
start_origin "$ORIGIN_PORT"

measure() { # $1 = label, $2.. = extra socialgate flags
  local label=$1; shift
  taskset -c 1 target/release/socialgate run --listen "127.0.0.1:$PROXY_PORT" --admin off \
    --policy benches/loopback-policy --pseudonym-key "$RUN/key" "$@" 2>/dev/null &
  local pid=$!; pids+=("$pid")
  wait_proxy "$PROXY_PORT"
  BENCH_ABS_URL="http://127.0.0.1:$ORIGIN_PORT/1k" timeout 30 taskset -c 0 wrk -t1 -c"$C" -d2 \
    -s "$BENCH/wrk-proxy.lua" "http://127.0.0.1:$PROXY_PORT" >/dev/null
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  local out
  out=$(BENCH_ABS_URL="http://127.0.0.1:$ORIGIN_PORT/1k" timeout $((DURATION + 20)) taskset -c 0 wrk -t1 -c"$C" -d"$DURATION" \
    -s "$BENCH/wrk-proxy.lua" "http://127.0.0.1:$PROXY_PORT" | grep BENCH)
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local req=${out#*requests=}; req=${req%% *}
  local errs=${out#*err_connect=}
  python3 - "$label" "$req" "$DURATION" "$((u1 - u0 + s1 - s0))" "$(getconf CLK_TCK)" "$errs" <<'PY'
import sys
label, req, dur, ticks, hz, errs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
print(f"{label}\t{req/dur:.0f}\t{ticks/hz*1e6/req:.1f}\t{errs}")
PY
}

echo -e "case\treq/s\tproxy µs/req\terrors(connect ...)" > "$RUN/results.tsv"
for r in $(seq "$ROUNDS"); do
  measure "log-off" --access-log off >> "$RUN/results.tsv"
  measure "log-json" --access-log "$RUN/access.log" ${LOG_FLAGS:-} >> "$RUN/results.tsv"
  rm -f "$RUN/access.log"
done
cat "$RUN/results.tsv"
python3 - "$RUN/results.tsv" <<'PY'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
med = lambda k, i: statistics.median(float(r[i]) for r in rows if r[0] == k)
off, on = med("log-off", 1), med("log-json", 1)
print(f"\nmedian req/s: log off {off:.0f}, log on {on:.0f}: logging costs {100 * (off - on) / off:.1f}% of req/s")
print(f"median proxy CPU: log off {med('log-off', 2):.1f} µs/req, log on {med('log-json', 2):.1f} µs/req")
PY
