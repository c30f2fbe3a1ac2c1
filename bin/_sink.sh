# Shared by the bin/ scripts: where the sink's runtime files live and how to
# start, probe and stop it. Sourced, not run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# SINK_* lines of .env apply unless the environment already sets them, so
# `SINK_PORT=9100 bin/setup` and a SINK_PORT in .env both work.
if [[ -f "$ROOT/.env" ]]; then
  # `|| [[ -n $key ]]` keeps a last line without a newline; CRLF files lose the CR.
  while IFS='=' read -r key value || [[ -n "$key" ]]; do
    [[ "$key" =~ ^SINK_[A-Z_]+$ ]] || continue
    value=${value%$'\r'}
    value=${value%\"}; value=${value#\"}; value=${value%\'}; value=${value#\'}
    [[ -n "${!key+set}" ]] || export "$key=$value"
  done < "$ROOT/.env"
fi

PORT=${SINK_PORT:-9009}
HOST=${SINK_HOST:-127.0.0.1}
RUN_DIR=${SINK_RUN_DIR:-$ROOT/.run}
PID_FILE="$RUN_DIR/sink-$PORT.pid"
LOG_FILE="$RUN_DIR/sink-$PORT.log"
PY="$ROOT/.venv/bin/python"
export SINK_PORT=$PORT SINK_HOST=$HOST
export SINK_DB=${SINK_DB:-$RUN_DIR/sink-$PORT.sqlite}
case "$HOST" in 0.0.0.0|"::"|"") PROBE_HOST=127.0.0.1 ;; *) PROBE_HOST=$HOST ;; esac
URL="http://$PROBE_HOST:$PORT"

ensure_venv() {
  [[ -x "$PY" ]] || make -C "$ROOT" --no-print-directory setup >&2
}

# The pid of our sink on this port, if it is alive; nothing otherwise. A pid
# file left by a crash may name a reused pid: it counts only if that process is
# a sink started for this very port.
sink_pid() {
  [[ -f "$PID_FILE" ]] || return 0
  local pid
  pid=$(<"$PID_FILE")
  if [[ "$pid" =~ ^[0-9]+$ ]] \
    && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "movymporter.sink" \
    && tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "SINK_PORT=$PORT"; then
    echo "$pid"
  fi
}

# Wait up to $1 tenths of a second for the sink to answer: status 1 when the
# time is up, 2 when the process $2 (if given) has exited meanwhile.
wait_answer() {
  local waited=0
  until answers; do
    if [[ -n "${2:-}" ]] && ! kill -0 "$2" 2>/dev/null; then
      return 2
    fi
    (( waited < $1 )) || return 1
    sleep 0.1
    waited=$((waited + 1))
  done
}

# True when something answers GET /metrics on the port (an HTTP error status
# is an answer too: some other service holds the port).
answers() {
  "$PY" - "$URL/metrics" <<'PY' 2>/dev/null
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=1).read()
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
PY
}

start_sink() {
  mkdir -p "$RUN_DIR"
  if answers; then
    echo "error: port $PORT already answers but is not a sink started by bin/setup; set SINK_PORT to a free port" >&2
    exit 1
  fi
  cd "$ROOT"
  setsid "$PY" -m movymporter.sink >>"$LOG_FILE" 2>&1 </dev/null &
  local pid=$! status=0
  echo "$pid" > "$PID_FILE"
  wait_answer 150 "$pid" || status=$?
  if (( status == 2 )); then
    echo "error: the sink exited during start-up; the end of $LOG_FILE says:" >&2
    tail -n 5 "$LOG_FILE" >&2
    rm -f "$PID_FILE"
    exit 1
  elif (( status == 1 )); then
    echo "error: the sink did not answer on $URL within 15 s; see $LOG_FILE" >&2
    exit 1
  fi
  STARTED_PID=$pid
}

# True while the process runs. A zombie has already exited (its port is free);
# only its parent can reap it, and when that is a PID 1 that reaps late or
# never (containers), `kill -0` would keep saying "alive".
running() {
  local stat
  { read -r stat < "/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  [[ "${stat%% *}" != Z ]]
}

stop_sink() {
  local pid waited=0
  pid=$(sink_pid)
  rm -f "$PID_FILE"
  [[ -n "$pid" ]] || return 1
  kill -TERM "$pid" 2>/dev/null || true
  while running "$pid"; do
    if (( waited >= 100 )); then
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  STOPPED_PID=$pid
}
