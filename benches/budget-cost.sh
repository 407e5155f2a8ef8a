#!/usr/bin/env bash
# What a daily budget costs per request: the peer benchmark's keep-alive
# case (../shared/bench/peers.sh case a: absolute-form `GET
# http://127.0.0.1:PORT/1k` through the proxy, wrk with the same
# wrk-proxy.lua, nginx origin with the same config) with socialgate under
#   off  benches/loopback-policy as it is (no rule has a budget)
#   on   the same with a first rule that matches every destination, the
#        benchmark host included, with a budget nobody spends in the run
#        (1440 minutes, 10 TB): every request is settled against the
#        budget ledger and charged (time hit and bytes)
# in alternating rounds in one run, at 64 and 1 connections. socialgate on
# CPU 1, nginx and wrk on CPU 0 (as peers.sh pins them).
#
#   cargo build --release && benches/budget-cost.sh        # ~3 min
#
# Knobs: ROUNDS=3 DURATION=10. Everything binds to 127.0.0.1, and every
# process started here is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-../shared/bench}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
ORIGIN_PORT=${ORIGIN_PORT:-18096}
PROXY_PORT=${PROXY_PORT:-18216}
. benches/lib.sh
bench_begin budgetcost
start_origin "$ORIGIN_PORT"

mkdir -p "$RUN/off" "$RUN/on"
cp benches/loopback-policy/* "$RUN/off/"
cp benches/loopback-policy/* "$RUN/on/"
python3 - "$RUN/on/policy.yaml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace("rules:\n", "rules:\n  - {id: bench-budget, groups: [staff], action: block, budget: {minutes: 1440, megabytes: 10000000}}\n", 1)
open(p, "w").write(s)
PY
target/release/socialgate check "$RUN/on" >/dev/null

URL="http://127.0.0.1:$ORIGIN_PORT/1k"
measure() { # $1 = label (= policy dir), $2 = connections
  local label=$1 c=$2
  taskset -c 1 target/release/socialgate run --listen "127.0.0.1:$PROXY_PORT" --admin off \
    --access-log off --policy "$RUN/$label" --pseudonym-key "$RUN/key" \
    --budget-state "$RUN/$label/budgets.json" 2>/dev/null &
  local pid=$!; pids+=("$pid")
  wait_proxy "$PROXY_PORT" "$URL"
  local header
  header=$(curl -s -D - -o /dev/null -x "127.0.0.1:$PROXY_PORT" "$URL" | tr -d '\r' | grep -i '^x-socialgate-budget-remaining' || true)
  if [ "$label" = on ] && [ -z "$header" ]; then echo "on: no budget header, the rule did not match" >&2; exit 1; fi
  if [ "$label" = off ] && [ -n "$header" ]; then echo "off: a budget applied" >&2; exit 1; fi
  BENCH_ABS_URL="$URL" timeout 30 taskset -c 0 wrk -t1 -c"$c" -d2 \
    -s "$BENCH/wrk-proxy.lua" "http://127.0.0.1:$PROXY_PORT" >/dev/null
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  local out
  out=$(BENCH_ABS_URL="$URL" timeout $((DURATION + 20)) taskset -c 0 wrk -t1 -c"$c" -d"$DURATION" \
    -s "$BENCH/wrk-proxy.lua" "http://127.0.0.1:$PROXY_PORT" | grep BENCH)
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local req=${out#*requests=}; req=${req%% *}
  local p50=${out#*p50_us=}; p50=${p50%% *}
  python3 - "$label" "$c" "$req" "$DURATION" "$((u1 - u0 + s1 - s0))" "$(getconf CLK_TCK)" "$p50" <<'PY'
import sys
label, c, req, dur, ticks, hz, p50 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
print(f"{label}\t{c}\t{req/dur:.0f}\t{ticks/hz*1e6/req:.2f}\t{p50}")
PY
}

echo -e "budget\tconns\treq/s\tproxy µs/req\tp50 µs" > "$RUN/results.tsv"
for _ in $(seq "$ROUNDS"); do
  for c in 64 1; do
    for label in off on; do
      measure "$label" "$c" >> "$RUN/results.tsv"
    done
  done
done
cat "$RUN/results.tsv"
python3 - "$RUN/results.tsv" <<'PY'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
med = lambda k, c, i: statistics.median(float(r[i]) for r in rows if r[0] == k and r[1] == c)
print()
for c in ("64", "1"):
    off_r, on_r = med("off", c, 2), med("on", c, 2)
    off_u, on_u = med("off", c, 3), med("on", c, 3)
    off_p, on_p = med("off", c, 4), med("on", c, 4)
    print(f"c={c}: median req/s on/off {on_r/off_r:.3f}, proxy CPU µs/req on/off {on_u/off_u:.3f} "
          f"({on_u - off_u:+.2f} µs), p50 on/off {on_p/off_p:.3f}")
PY
