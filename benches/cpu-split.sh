#!/usr/bin/env bash
# Where a keep-alive request's CPU goes, socialgate against nginx as a plain
# reverse proxy (../shared/bench's nginx-peer config), in one run: user and
# system CPU per request (from /proc/PID/stat, the whole process tree), and,
# when perf is there, system calls and context switches per request
# (software tracepoints, which need no hardware counters). Each proxy on
# CPU 1, oha (N 1 KiB GETs over C (64) keep-alive connections) and the nginx
# origin on CPU 0; socialgate with benches/loopback-policy and its JSON
# access log on. ROUNDS alternating rounds.
#
#   cargo build --release && ROUNDS=2 N=100000 benches/cpu-split.sh
#
# FLOOR=1 adds examples/bare_forward (tokio and hyper forwarding with no
# policy and no log: what socialgate's parts cost on their own); build it
# first with `cargo build --release --example bare_forward`.
# FLOOR_RUNTIME=current runs it on tokio's single-threaded scheduler.
#
# Everything binds to 127.0.0.1; every process started here is stopped by
# its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/socialgate}
N=${N:-100000}
C=${C:-64}
ROUNDS=${ROUNDS:-2}
ORIGIN_PORT=${ORIGIN_PORT:-18097}
PROXY_PORT=${PROXY_PORT:-18217}
NGINX_PORT=${NGINX_PORT:-18317}
FLOOR_PORT=${FLOOR_PORT:-18218}
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
. benches/lib.sh
bench_begin split
start_origin "$ORIGIN_PORT"
mkdir -p "$RUN/peer/tmp"
user_line=""; [ "$(id -u)" = 0 ] && user_line="user root;"
sed -e "s|@USER_LINE@|$user_line|" -e "s|@RUN@|$RUN|g" -e "s|@ORIGIN_HTTP_PORT@|$ORIGIN_PORT|" \
    -e "s|@PORT@|$NGINX_PORT|" -e "s|@BUFFERING@|off|" -e "s|nginx-peer/|peer/|g" \
    "$BENCH/conf/nginx-peer.conf.in" > "$RUN/peer.conf"

ticks() { # user and system clock ticks of the given PIDs, summed
  local u=0 s=0 a b
  for p in "$@"; do read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat"); u=$((u + a)); s=$((s + b)); done
  echo "$u $s"
}
EVENTS=context-switches,page-faults,raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_writev,syscalls:sys_enter_recvfrom,syscalls:sys_enter_futex,syscalls:sys_enter_write
measure() { # name port pid...
  local name=$1 port=$2; shift 2
  local url="http://127.0.0.1:$ORIGIN_PORT/1k" hz; hz=$(getconf CLK_TCK)
  taskset -c 0 "$OHA" -n 5000 -c "$C" --no-tui -x "http://127.0.0.1:$port" "$url" >/dev/null
  local perf_pid="" targets; targets=$(IFS=,; echo "$*")
  if command -v perf >/dev/null; then
    perf stat -e "$EVENTS" -p "$targets" -o "$RUN/stat.txt" 2>/dev/null & perf_pid=$!
  fi
  read -r u0 s0 < <(ticks "$@")
  taskset -c 0 timeout 300 "$OHA" -n "$N" -c "$C" --no-tui -x "http://127.0.0.1:$port" "$url" > "$RUN/oha.txt"
  read -r u1 s1 < <(ticks "$@")
  [ -n "$perf_pid" ] && { kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; }
  local rps; rps=$(awk '/Requests\/sec/ {print $2; exit}' "$RUN/oha.txt")
  awk -v n="$N" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$hz" -v name="$name" -v rps="$rps" \
    'BEGIN {printf "%-11s %8.0f req/s  user %5.1f µs  system %5.1f µs  total %5.1f µs per request", name, rps, u*1e6/hz/n, s*1e6/hz/n, (u+s)*1e6/hz/n}'
  if [ -n "$perf_pid" ] && [ -s "$RUN/stat.txt" ]; then
    awk -v n="$N" '/^ *[0-9]/ && $2 !~ /seconds|msec/ {gsub(",", "", $1); sub("syscalls:sys_enter_", "", $2); sub("raw_syscalls:sys_enter", "syscalls", $2); printf "  %s %.2f", $2, $1 / n}' "$RUN/stat.txt"
  fi
  echo
}

for round in $(seq "$ROUNDS"); do
  echo "round $round (load average $(cut -d' ' -f1 /proc/loadavg))"
  taskset -c 1 nginx -c "$RUN/peer.conf" -p "$RUN/peer" -g 'daemon off;' & npid=$!; pids+=("$npid")
  wait_proxy "$NGINX_PORT"
  # shellcheck disable=SC2046
  measure nginx "$NGINX_PORT" "$npid" $(pgrep -P "$npid")
  kill "$npid"; wait "$npid" 2>/dev/null || true
  rm -f "$RUN/access.log"
  taskset -c 1 "$BIN" run --listen "127.0.0.1:$PROXY_PORT" --admin off --policy benches/loopback-policy \
    --pseudonym-key "$RUN/key" --access-log "$RUN/access.log" 2>/dev/null & spid=$!; pids+=("$spid")
  wait_proxy "$PROXY_PORT"
  measure socialgate "$PROXY_PORT" "$spid"
  kill "$spid"; wait "$spid" 2>/dev/null || true
  if [ "${FLOOR:-0}" = 1 ]; then
    taskset -c 1 target/release/examples/bare_forward run --listen "127.0.0.1:$FLOOR_PORT" & fpid=$!; pids+=("$fpid")
    wait_proxy "$FLOOR_PORT"
    measure "bare-${FLOOR_RUNTIME:-multi}" "$FLOOR_PORT" "$fpid"
    kill "$fpid"; wait "$fpid" 2>/dev/null || true
  fi
done
