# shellcheck shell=bash
# Shared by the build scripts in hack/ (node-tools.sh, images.sh, observability-tools.sh):
# a log line tagged with the script's name, and run_long for a step that takes minutes.
# Before sourcing, set LOG_TAG (e.g. node-tools) and RUN_LOG_DIR (where step logs go).

log() { printf '[%s] %s\n' "${LOG_TAG:?}" "$*" >&2; }

# run_long WHAT COMMAND...: run COMMAND quietly, with a heartbeat every 30 s so a long first
# build shows a sign of life; its output goes to a log file under RUN_LOG_DIR, whose tail is
# shown only when it fails.
run_long() {
  local what="$1"; shift
  local logf
  mkdir -p "${RUN_LOG_DIR:?}"
  logf="$RUN_LOG_DIR/$(echo "$what" | tr ' /:@' '____').log"
  local t0=$SECONDS n=0
  "$@" >"$logf" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    n=$((n + 1))
    if (( n % 30 == 0 )); then log "  ... $what: still running ($((SECONDS - t0)) s)"; fi
  done
  if ! wait "$pid"; then
    log "FAILED: $what (log: $logf)"
    tail -n 40 "$logf" >&2
    return 1
  fi
  log "  $what: done in $((SECONDS - t0)) s"
}
