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

build_kubernetes() {
  local cmds=() c
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do have "$c" || cmds+=("$c"); done
  [[ ${#cmds[@]} -eq 0 ]] && return 0
  local mod="$CACHE/tools/$KEY/src/kubernetes"
  mkdir -p "$mod"
  local upstream
  upstream=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  local staging="v0.${K8S_VERSION#v1.}"
  {
    echo "module edgemodel.dev/hack/kubernetes"
    echo
    grep -E '^go ' "$upstream"
    grep -E '^godebug ' "$upstream" || true
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    # Every staging module of this release, pinned to its published tag.
    sed -n '/^replace (/,/^)/p' "$upstream" | awk -v v="$staging" '$2 == "=>" && $3 ~ /^\.\/staging\// {printf "\t%s => %s %s\n", $1, $1, v}'
    echo ")"
  } > "$mod/go.mod"
  local major minor
  major=$(echo "$K8S_VERSION" | sed -E 's/^v([0-9]+)\..*/\1/')
  minor=$(echo "$K8S_VERSION" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=$major -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  (
    cd "$mod"
    for c in "${cmds[@]}"; do
      log "go get k8s.io/kubernetes/cmd/$c@$K8S_VERSION"
      go get "k8s.io/kubernetes/cmd/$c@$K8S_VERSION"
    done
    for c in "${cmds[@]}"; do
      log "go build $c"
      go build -ldflags "$ld" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c"
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
    log "go build etcd $ETCD_VERSION"
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    go build -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$BIN/etcd.tmp" "$BIN/etcd"
  )
}

install_plain() {  # name module-path@version
  have "$1" && return 0
  log "go install $2"
  GOBIN="$BIN" go install -ldflags "-s -w" "$2"
}

build_etcd
install_plain kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
install_plain helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
build_kubernetes
log "ready in $BIN"
echo "$BIN"
