#!/usr/bin/env bash
# What a warn rule costs once the person has continued: keep-alive 1 KiB
# GETs to a platform host through socialgate, alternating A/B/C rounds in
# one run:
#   allow        a rule allows the platform (the baseline)
#   warn-memory  a warn rule, acknowledged, acknowledgements in memory
#   warn-redis   a warn rule, acknowledged, acknowledgements in a local
#                redis-server on a unix socket (one GET per request)
# wrk at 64 connections; the nginx origin and wrk on CPU 0, socialgate on
# CPU 1, redis-server on CPU 0. Uses ../shared/bench's nginx config and wrk
# script. Before each measurement the client (127.0.0.1) takes the warning's
# Continue link with curl, as a browser would.
#
#   cargo build --release && benches/warn-cost.sh        # ~2 min
#
# Knobs: ROUNDS=3 DURATION=10 C=64. Everything binds to 127.0.0.1 or a unix
# socket in a temp dir, and every process started here is stopped by its PID
# on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-../shared/bench}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
C=${C:-64}
ORIGIN_PORT=${ORIGIN_PORT:-18094}
PROXY_PORT=${PROXY_PORT:-18214}
. benches/lib.sh
bench_begin warncost
start_origin "$ORIGIN_PORT"

taskset -c 0 redis-server --port 0 --unixsocket "$RUN/redis.sock" --unixsocketperm 700 \
  --save "" --appendonly no --dir "$RUN" >/dev/null 2>&1 &
pids+=("$!")
for _ in $(seq 50); do [ -S "$RUN/redis.sock" ] && break; sleep 0.1; done

policy() { # $1 = dir, $2 = action, $3 = extra policy text
  mkdir -p "$1"
  cp benches/loopback-policy/catalog.yaml "$1/"
  cat > "$1/policy.yaml" <<EOF
version: 1
destinations: {allow: [127.0.0.0/8]}
groups: {staff: {networks: [127.0.0.0/8]}}
rules:
  - {id: tiktok, groups: [staff], platforms: [tiktok], action: $2}
$3
EOF
}
policy "$RUN/allow" allow ""
policy "$RUN/warn-memory" warn ""
policy "$RUN/warn-redis" warn "state: {redis: \"redis+unix://$RUN/redis.sock\"}"

URL="http://www.tiktok.com:$ORIGIN_PORT/1k"
measure() { # $1 = label (= policy dir)
  local label=$1
  taskset -c 1 target/release/socialgate run --listen "127.0.0.1:$PROXY_PORT" --admin off \
    --access-log off --resolve "www.tiktok.com=127.0.0.1" \
    --policy "$RUN/$label" --pseudonym-key "$RUN/key" 2>/dev/null &
  local pid=$!; pids+=("$pid")
  wait_proxy "$PROXY_PORT" "$URL"
  # Continue past the warning, as a browser would (no-op for allow).
  local href
  href=$(curl -s -x "127.0.0.1:$PROXY_PORT" -H 'Accept: text/html' "$URL" | grep -o '/__socialgate/continue?t=[A-Za-z0-9_.-]*' || true)
  if [ -n "$href" ]; then
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -x "127.0.0.1:$PROXY_PORT" "http://www.tiktok.com:$ORIGIN_PORT$href")
    [ "$code" = 303 ] || { echo "continue failed for $label: $code" >&2; exit 1; }
  fi
  [ "$(curl -s -o /dev/null -w '%{http_code}' -x "127.0.0.1:$PROXY_PORT" "$URL")" = 200 ] \
    || { echo "$label: not passing after Continue" >&2; exit 1; }
  BENCH_ABS_URL="$URL" timeout 30 taskset -c 0 wrk -t1 -c"$C" -d2 \
    -s "$BENCH/wrk-proxy.lua" "http://127.0.0.1:$PROXY_PORT" >/dev/null
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  local out
  out=$(BENCH_ABS_URL="$URL" timeout $((DURATION + 20)) taskset -c 0 wrk -t1 -c"$C" -d"$DURATION" \
    -s "$BENCH/wrk-proxy.lua" "http://127.0.0.1:$PROXY_PORT" | grep BENCH)
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local req=${out#*requests=}; req=${req%% *}
  local p50=${out#*p50_us=}; p50=${p50%% *}
  local p99=${out#*p99_us=}; p99=${p99%% *}
  local errs=${out#*err_connect=}
  python3 - "$label" "$req" "$DURATION" "$((u1 - u0 + s1 - s0))" "$(getconf CLK_TCK)" "$p50" "$p99" "$errs" <<'PY'
import sys
label, req, dur, ticks, hz, p50, p99, errs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7], sys.argv[8]
print(f"{label}\t{req/dur:.0f}\t{ticks/hz*1e6/req:.1f}\t{p50}\t{p99}\t{errs}")
PY
}

echo -e "case\treq/s\tproxy µs/req\tp50 µs\tp99 µs\terrors(connect ...)" > "$RUN/results.tsv"
for _ in $(seq "$ROUNDS"); do
  for label in allow warn-memory warn-redis; do
    measure "$label" >> "$RUN/results.tsv"
  done
done
cat "$RUN/results.tsv"
python3 - "$RUN/results.tsv" <<'PY'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
med = lambda k, i: statistics.median(float(r[i]) for r in rows if r[0] == k)
print()
for k in ("allow", "warn-memory", "warn-redis"):
    print(f"median {k}: {med(k, 1):.0f} req/s, proxy CPU {med(k, 2):.1f} µs/req, p50 {med(k, 3):.0f} µs, p99 {med(k, 4):.0f} µs")
PY
