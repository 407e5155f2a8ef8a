#!/usr/bin/env bash
# Instructions per proxied keep-alive request, counted by callgrind over the
# whole proxy process (all threads): exact whatever else the machine is
# doing, so two builds compare on a loaded host. The proxy runs under
# valgrind with benches/loopback-policy and the JSON access log on; oha
# sends N 1 KiB GETs over 4 keep-alive connections through it to a local
# nginx origin (../shared/bench's config). Start-up is taken out by
# running twice (N1 and N2 requests) and dividing the difference.
#
#   cargo build --release && benches/request-instructions.sh [BIN] [N1] [N2]
#
# Prints: total and memmove instructions per request. Everything binds to
# 127.0.0.1; every process started here is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/socialgate}
N1=${2:-500}
N2=${3:-2500}
BENCH=${BENCH:-../shared/bench}
ORIGIN_PORT=${ORIGIN_PORT:-18096}
PROXY_PORT=${PROXY_PORT:-18216}
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
. benches/lib.sh
bench_begin insn
start_origin "$ORIGIN_PORT"

count() { # count N -> "total memmove" instructions of a proxy life with N requests
  valgrind --tool=callgrind --callgrind-out-file="$RUN/cg.out" "$BIN" run --listen "127.0.0.1:$PROXY_PORT" \
    --admin off --policy benches/loopback-policy --pseudonym-key "$RUN/key" --access-log "$RUN/access.log" 2>/dev/null &
  local pid=$!; pids+=("$pid")
  wait_proxy "$PROXY_PORT" "http://127.0.0.1:$ORIGIN_PORT/1k" 600   # slow under valgrind
  timeout 600 "$OHA" -n "$1" -c 4 --no-tui -x "http://127.0.0.1:$PROXY_PORT" "http://127.0.0.1:$ORIGIN_PORT/1k" >/dev/null
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  callgrind_annotate "$RUN/cg.out" 2>/dev/null | awk '
    /PROGRAM TOTALS/ {gsub(",", "", $1); t = $1}
    /memmove/ && !m {gsub(",", "", $1); m = $1}
    END {print t, m + 0}'
  rm -f "$RUN/access.log" "$RUN/cg.out"
}
read -r t1 m1 < <(count "$N1")
read -r t2 m2 < <(count "$N2")
awk -v t1="$t1" -v t2="$t2" -v m1="$m1" -v m2="$m2" -v n=$((N2 - N1)) -v bin="$BIN" \
  'BEGIN {printf "%s\t%.0f instructions per request\t%.0f in memmove\t%.0f the rest\n", bin, (t2 - t1) / n, (m2 - m1) / n, (t2 - t1 - m2 + m1) / n}'
