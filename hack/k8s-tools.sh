#!/usr/bin/env bash
# Build (or reuse) the pinned control-plane binaries used by the test harness and the demo:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and helm.
#
# Binaries already on PATH or in $KUBEBUILDER_ASSETS are not rebuilt here: the harness
# looks there first. Everything else is built from pinned Go modules through the Go
# module proxy and cached under ~/.cache/edgemodel, keyed by version.
#
# Usage: hack/k8s-tools.sh            build what is missing, print the bin directory
#        hack/k8s-tools.sh --print    only print the bin directory
set -euo pipefail

# shellcheck source=hack/versions.env
source "$(dirname "${BASH_SOURCE[0]}")/versions.env"
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"  # kubernetes_module, kubernetes_ldflags

CACHE="${EDGEMODEL_CACHE:-$HOME/.cache/edgemodel}"
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
BIN="$CACHE/tools/$KEY/bin"

if [[ "${1:-}" == "--print" ]]; then echo "$BIN"; exit 0; fi

export GOMODCACHE="$CACHE/go/mod"
export GOCACHE="$CACHE/go/build"
export CGO_ENABLED=0
export GOFLAGS="-buildvcs=false -trimpath"
mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE"

log() { printf '[k8s-tools] %s\n' "$*" >&2; }
have() { [[ -x "$BIN/$1" ]]; }

# Sign of life for the long first build (about 10-20 minutes on 2 cores): each step says
# what it builds, "step i/N" and a rough time, and a long-running step prints a heartbeat
# with the elapsed time every HEARTBEAT seconds. All of it goes to stderr.
HEARTBEAT="${EDGEMODEL_HEARTBEAT_SECONDS:-30}"
TOOLS=(etcd kwok helm kube-apiserver kube-controller-manager kube-scheduler kubectl)
present() { local t n=0; for t in "${TOOLS[@]}"; do [[ -x "$BIN/$t" ]] && n=$((n + 1)); done; echo "$n"; }
PRESENT=$(present)
STEPS=$((${#TOOLS[@]} - PRESENT))
START=$SECONDS
# step WHAT ROUGH-TIME COMMAND...: run COMMAND, announcing it and printing a heartbeat.
step() {
  local what="$1" rough="$2"; shift 2
  # Counted from the binaries built so far: steps also run in subshells.
  local step=$(($(present) - PRESENT + 1))
  log "step $step/$STEPS: building $what (roughly $rough on 2 cores; first build only, then cached)"
  local began=$SECONDS
  "$@" &
  local pid=$!
  while ! wait_for "$pid" "$HEARTBEAT"; do
    log "  ... still building $what: $((SECONDS - began)) s so far ($((SECONDS - START)) s in total)"
  done
  wait "$pid"
  log "  built $what in $((SECONDS - began)) s"
}
# wait_for PID SECONDS: true once PID has exited, false if it still runs after SECONDS.
wait_for() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  ! kill -0 "$1" 2>/dev/null
}

build_kubernetes() {
  local cmds=() c
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do have "$c" || cmds+=("$c"); done
  [[ ${#cmds[@]} -eq 0 ]] && return 0
  local mod="$CACHE/tools/$KEY/src/kubernetes"
  kubernetes_module "$mod"
  local ld
  ld=$(kubernetes_ldflags)
  (
    cd "$mod"
    for c in "${cmds[@]}"; do
      log "go get k8s.io/kubernetes/cmd/$c@$K8S_VERSION"
      go get "k8s.io/kubernetes/cmd/$c@$K8S_VERSION"
    done
    for c in "${cmds[@]}"; do
      step "$c $K8S_VERSION" "3-5 min" go build -ldflags "$ld" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c"
      mv "$BIN/$c.tmp" "$BIN/$c"
    done
  )
}

build_etcd() {
  have etcd && return 0
  local mod="$CACHE/tools/$KEY/src/etcd"
  mkdir -p "$mod"
  printf 'module edgemodel.dev/hack/etcd\n\ngo 1.24\n' > "$mod/go.mod"
  (
    cd "$mod"
    log "go get etcd $ETCD_VERSION"
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    step "etcd $ETCD_VERSION" "1-2 min" go build -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$BIN/etcd.tmp" "$BIN/etcd"
  )
}

install_plain() {  # name module-path@version rough-time
  have "$1" && return 0
  step "$1 (go install $2)" "$3" env GOBIN="$BIN" go install -ldflags "-s -w" "$2"
}

[[ $STEPS -gt 0 ]] && log "building $STEPS of ${#TOOLS[@]} Kubernetes tools into $BIN: about 10-20 minutes the first time"
build_etcd
install_plain kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "1-2 min"
install_plain helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "2-3 min"
build_kubernetes
log "ready in $BIN ($((SECONDS - START)) s)"
echo "$BIN"
