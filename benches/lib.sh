# Shared by the benchmark scripts in this folder (sourced, not run): a run
# directory removed on exit, every process a script starts stopped by its
# PID (add them to `pids`), and the bench's nginx origin
# (../shared/bench/conf/nginx.conf.in) on CPU 0 serving /1k (and /1m) over
# plain HTTP and TLS. Everything binds to 127.0.0.1.
#
#   . benches/lib.sh
#   bench_begin NAME                 # sets RUN and pids; cleans up on EXIT
#   start_origin HTTP_PORT [TLS_PORT] [1m]
#                                    # TLS_PORT defaults to HTTP_PORT + 1;
#                                    # returns once the origin answers
#   wait_proxy PORT [URL] [TRIES]    # until a request through the proxy on
#                                    # PORT answers (every 0.1 s, 100 tries)

BENCH=${BENCH:-../shared/bench}

bench_begin() {
  RUN=$(mktemp -d "/tmp/sg-$1.XXXXXX")
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$RUN/nginx/nginx.pid" ] && kill "$(cat "$RUN/nginx/nginx.pid")" 2>/dev/null || true
  rm -rf "$RUN"
}

start_origin() {
  local http=$1 tls=${2:-$(($1 + 1))} big=${3:-}
  mkdir -p "$RUN/nginx/tmp" "$RUN/www" "$RUN/tls"
  head -c 1024 /dev/zero | tr '\0' 'a' > "$RUN/www/1k"
  [ "$big" = 1m ] && head -c 1048576 /dev/urandom > "$RUN/www/1m"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$RUN/tls/origin.key" -out "$RUN/tls/origin.crt" -days 1 -subj /CN=localhost 2>/dev/null
  local user_line=""; [ "$(id -u)" = 0 ] && user_line="user root;"
  # peers.sh's inspection case includes a file of its own; not needed here.
  sed -e "s|@USER_LINE@|$user_line|" -e 's|@ORIGIN_WORKERS@|1|' -e "s|@RUN@|$RUN|g" \
      -e "s|@ORIGIN_HTTP_PORT@|$http|" -e "s|@ORIGIN_TLS_PORT@|$tls|" \
      -e "s|include .*inspect.conf;||" \
      "$BENCH/conf/nginx.conf.in" > "$RUN/nginx.conf"
  taskset -c 0 nginx -c "$RUN/nginx.conf" -p "$RUN"
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$http/1k" && return 0; sleep 0.1; done
  echo "the nginx origin on 127.0.0.1:$http did not answer" >&2
  exit 1
}

wait_proxy() {
  local port=$1 url=${2:-http://127.0.0.1:$ORIGIN_PORT/1k} tries=${3:-100}
  for _ in $(seq "$tries"); do curl -s -o /dev/null -x "127.0.0.1:$port" "$url" && return 0; sleep 0.1; done
  echo "the proxy on 127.0.0.1:$port did not answer $url" >&2
  exit 1
}
