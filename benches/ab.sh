#!/usr/bin/env bash
# Two (or more) socialgate builds side by side, alternated in one run: proxy
# CPU per keep-alive request and bulk throughput through CONNECT tunnels.
# Only figures from the same run compare (the machine is shared and noisy).
#
#   BINS="before=/work/wt-before/target/release/socialgate after=target/release/socialgate" \
#   ROUNDS=5 DURATION=5 benches/ab.sh                       # ~2 min per round
#
# Cases (CASES, default both):
#   keepalive  wrk, 1 KiB GETs over 64 keep-alive connections (C), JSON
#              access log on: req/s and proxy CPU µs per request
#   tunnel     oha through CONNECT + TLS, 1 MiB bodies over 4 keep-alive
#              tunnels (C_TUNNEL): MiB/s, proxy CPU ms per GiB, and how busy
#              the load generator's core is (lg %); plus `direct` (no proxy)
#              as the reference each round
# PERF=1 adds one run per build and case under `perf stat` (after the timed
# rounds): the proxy's socket syscalls and context switches, and context
# switches on the load generator's core (CPU 0), per request or per MiB.
# PROFILE=1 records each build under `perf record -g` during a keep-alive
# run (files in PROFILE_DIR, default /tmp: ab-NAME.perf, ab-NAME.txt;
# PROFILE_CG=dwarf for call graphs through libc).
#
# Uses ../shared/bench's nginx origin config and wrk script; the proxy is
# pinned to CPU 1, wrk, oha and nginx to CPU 0. Everything binds to
# 127.0.0.1 (not to be run beside peers.sh, which uses port 18443 too);
# every process started here is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BINS=${BINS:-"current=target/release/socialgate"}
CASES=${CASES:-"keepalive tunnel"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
C=${C:-64}
C_TUNNEL=${C_TUNNEL:-4}
ORIGIN_PORT=${ORIGIN_PORT:-18092}
ORIGIN_TLS_PORT=${ORIGIN_TLS_PORT:-18443}   # a tunnel port benches/loopback-policy allows
PROXY_PORT=${PROXY_PORT:-18212}
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
. benches/lib.sh
bench_begin ab
start_origin "$ORIGIN_PORT" "$ORIGIN_TLS_PORT" 1m
HZ=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# busy and total ticks of CPU 0 (the load generator's and origin's core)
cpu0() { awk '$1 == "cpu0" {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }

start_proxy() { # start_proxy BIN ; sets PID
  taskset -c 1 "$1" run --listen "127.0.0.1:$PROXY_PORT" --admin off \
    --policy benches/loopback-policy --pseudonym-key "$RUN/key" --access-log "$RUN/access.log" 2>/dev/null &
  PID=$!; pids+=("$PID")
  wait_proxy "$PROXY_PORT"
}
stop_proxy() { kill "$PID"; wait "$PID" 2>/dev/null || true; rm -f "$RUN/access.log"; }

wrk_run() { # wrk_run SECONDS -> "requests"
  BENCH_ABS_URL="http://127.0.0.1:$ORIGIN_PORT/1k" timeout $(($1 + 20)) taskset -c 0 wrk -t1 -c"$C" -d"$1" \
    -s "$BENCH/wrk-proxy.lua" "http://127.0.0.1:$PROXY_PORT" | awk '/^BENCH/ {for (i = 2; i <= NF; i++) if ($i ~ /^requests=/) {sub("requests=", "", $i); print $i}}'
}
oha_run() { # oha_run SECONDS [proxy] -> "bytes seconds"
  local px=(); [ -n "${2:-}" ] && px=(-x "http://127.0.0.1:$PROXY_PORT")
  timeout $(($1 + 20)) taskset -c 0 "$OHA" -z "$1s" -c "$C_TUNNEL" --no-tui --insecure --http-version 1.1 \
    --output-format json "${px[@]}" "https://127.0.0.1:$ORIGIN_TLS_PORT/1m" > "$RUN/oha.json" 2>/dev/null || true
  jq -r '"\(.summary.totalData) \(.summary.total)"' "$RUN/oha.json"
}

measure() { # measure NAME BIN CASE -> one TSV line
  local name=$1 bin=$2 case=$3 t0 t1 b0 b1 out
  [ "$name" != direct ] && start_proxy "$bin"
  if [ "$case" = keepalive ]; then
    wrk_run 2 >/dev/null
    t0=$(cpu_ticks "$PID"); read -r b0 a0 < <(cpu0)
    out=$(wrk_run "$DURATION")
    t1=$(cpu_ticks "$PID"); read -r b1 a1 < <(cpu0)
    stop_proxy
    awk -v n="$name" -v r="$out" -v d="$DURATION" -v t=$((t1 - t0)) -v hz="$HZ" -v lb=$((b1 - b0)) -v la=$((a1 - a0)) \
      'BEGIN {printf "keepalive\t%s\t%.0f req/s\t%.1f µs/req\t%.0f lg%%\n", n, r / d, t / hz * 1e6 / r, 100 * lb / la}'
  else
    oha_run 2 ${PID:+proxy} >/dev/null
    [ "$name" != direct ] && t0=$(cpu_ticks "$PID")
    read -r b0 a0 < <(cpu0)
    out=$(oha_run "$DURATION" $([ "$name" != direct ] && echo proxy))
    read -r b1 a1 < <(cpu0)
    if [ "$name" != direct ]; then t1=$(cpu_ticks "$PID"); stop_proxy; else t0=0; t1=0; fi
    read -r bytes secs <<<"$out"
    awk -v n="$name" -v b="$bytes" -v s="$secs" -v t=$((t1 - t0)) -v hz="$HZ" -v lb=$((b1 - b0)) -v la=$((a1 - a0)) \
      'BEGIN {printf "tunnel\t%s\t%.1f MiB/s\t%.0f ms/GiB\t%.0f lg%%\n", n, b / 1048576 / s, t / hz * 1e3 / (b / 1073741824), 100 * lb / la}'
  fi
  PID=""
}

perf_run() { # perf_run NAME BIN CASE : syscalls of the proxy and context switches on CPU 0, per request or per MiB
  local name=$1 bin=$2 case=$3 units unit ev
  ev=syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_sendto,syscalls:sys_enter_write
  ev=$ev,syscalls:sys_enter_writev,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex
  start_proxy "$bin"
  if [ "$case" = keepalive ]; then wrk_run 2 >/dev/null; else oha_run 2 proxy >/dev/null; fi
  timeout $((DURATION + 30)) perf stat -x, -o "$RUN/perf-proxy.txt" -e "$ev,context-switches" -p "$PID" &
  local p1=$!; pids+=("$p1")
  timeout $((DURATION + 30)) perf stat -x, -o "$RUN/perf-cpu0.txt" -C 0 -e context-switches &
  local p2=$!; pids+=("$p2")
  if [ "$case" = keepalive ]; then units=$(wrk_run "$DURATION"); unit=request
  else read -r bytes _ <<<"$(oha_run "$DURATION" proxy)"; units=$(awk -v b="$bytes" 'BEGIN {print b / 1048576}'); unit=MiB; fi
  kill -INT "$p1" "$p2" 2>/dev/null || true; wait "$p1" "$p2" 2>/dev/null || true
  stop_proxy
  echo "== $name, $case: per $unit"
  awk -F, -v u="$units" '$1 ~ /^[0-9]+$/ && $1 > 0 {n = $3; sub("syscalls:sys_enter_", "", n); printf "  proxy %-18s %9.3f\n", n, $1 / u}' "$RUN/perf-proxy.txt"
  awk -F, -v u="$units" '$1 ~ /^[0-9]+$/ {printf "  CPU 0 %-18s %9.3f\n", $3, $1 / u}' "$RUN/perf-cpu0.txt"
}

profile_run() { # profile_run NAME BIN : perf record of the proxy during a keep-alive run
  local name=$1 bin=$2 out=${PROFILE_DIR:-/tmp}/ab-$1
  start_proxy "$bin"
  wrk_run 2 >/dev/null
  timeout $((DURATION + 30)) perf record -q -e cpu-clock -F "${PROFILE_HZ:-4999}" --call-graph "${PROFILE_CG:-fp}" -o "$out.perf" -p "$PID" 2>/dev/null &
  local p1=$!; pids+=("$p1")
  wrk_run "$DURATION" >/dev/null
  kill -INT "$p1" 2>/dev/null || true; wait "$p1" 2>/dev/null || true
  stop_proxy
  perf report -i "$out.perf" --no-children --sort symbol --percent-limit 0.7 --stdio 2>/dev/null | grep -v '^$' > "$out.txt" || true
  echo "== $name: profile in $out.perf, top symbols in $out.txt"
}

echo -e "case\tbuild\tthroughput\tproxy CPU\tload-generator core" > "$RUN/results.tsv"
for r in $(seq "$ROUNDS"); do
  for c in $CASES; do
    [ "$c" = tunnel ] && measure direct - tunnel | tee -a "$RUN/results.tsv"
    for nb in $BINS; do measure "${nb%%=*}" "${nb#*=}" "$c" | tee -a "$RUN/results.tsv"; done
  done
done
echo
python3 - "$RUN/results.tsv" "$ROUNDS" <<'PY'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
print(f"medians of {sys.argv[2]} rounds:")
seen = []
for r in rows:
    if (r[0], r[1]) not in seen:
        seen.append((r[0], r[1]))
for case, build in seen:
    sel = [r for r in rows if r[0] == case and r[1] == build]
    cols = []
    for i in (2, 3, 4):
        vals = [float(r[i].split()[0]) for r in sel]
        cols.append(f"{statistics.median(vals):.1f} {sel[0][i].split()[1]}")
    print(f"{case}\t{build}\t" + "\t".join(cols))
PY
if [ "${PROFILE:-0}" = 1 ]; then
  for nb in $BINS; do profile_run "${nb%%=*}" "${nb#*=}"; done
fi
if [ "${PERF:-0}" = 1 ]; then
  for c in $CASES; do for nb in $BINS; do perf_run "${nb%%=*}" "${nb#*=}" "$c"; done; done
fi
