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

# kubernetes_module DIR: write DIR/go.mod, a wrapper module that builds k8s.io/kubernetes at
# K8S_VERSION: every staging module pinned to its published tag (generated from the release's
# own replace block), and the release's go and godebug lines. Used by k8s-tools.sh (the
# control plane) and node-tools.sh (kubelet, kube-proxy).
kubernetes_module() {
  local mod="$1" upstream staging="v0.${K8S_VERSION#v1.}"
  mkdir -p "$mod"
  upstream=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module edgemodel.dev/hack/kubernetes"
    echo
    grep -E '^go ' "$upstream"
    grep -E '^godebug ' "$upstream" || true
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    sed -n '/^replace (/,/^)/p' "$upstream" |
      awk -v v="$staging" '$2 == "=>" && $3 ~ /^\.\/staging\// {printf "\t%s => %s %s\n", $1, $1, v}'
    echo ")"
  } > "$mod/go.mod"
}

# kubernetes_ldflags: the -ldflags that stamp K8S_VERSION into a Kubernetes binary (without
# them it reports v0.0.0-master, which confuses version checks such as Helm's kubeVersion).
kubernetes_ldflags() {
  local major minor
  major=$(echo "$K8S_VERSION" | sed -E 's/^v([0-9]+)\..*/\1/')
  minor=$(echo "$K8S_VERSION" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')
  printf '%s' "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION" \
    " -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor" \
    " -X k8s.io/component-base/version.gitTreeState=clean" \
    " -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" \
    " -X k8s.io/client-go/pkg/version.gitMajor=$major -X k8s.io/client-go/pkg/version.gitMinor=$minor"
}
