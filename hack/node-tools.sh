#!/usr/bin/env bash
# Build (or reuse) the pinned tools of the real e2e node (issue 11):
#   Debian packages  runc, CNI plugins (/usr/lib/cni), iptables, conntrack, buildah, mmdebstrap,
#                    busybox-static (apt-get, only when missing; we are root)
#   containerd       containerd, containerd-shim-runc-v2, ctr   (CONTAINERD_VERSION, from source)
#   coredns          (COREDNS_VERSION) trimmed: a main of our own with only the seven plugins of
#                    the harness's Corefile, not upstream's every plugin (cloud SDKs); from an
#                    empty Go build cache 116 s wall / 221 s CPU instead of 167 s / 308 s
#                    (see build_coredns and docs/real-node.md)
#   metrics-server   (METRICS_SERVER_VERSION)
#   kubelet, kube-proxy (K8S_VERSION, the control plane's version)
# All versions live in hack/versions.env. Go binaries are built through the Go module proxy
# with CGO_ENABLED=0 and cached under ~/.cache/edgemodel/node/<key>/bin, keyed by the versions
# and NODE_RECIPE (bumped when a build recipe changes).
# The Go module and build caches are the ones of hack/k8s-tools.sh, so the kubelet build
# reuses what the control-plane build compiled.
#
# containerd: 2.x built from source, not Debian bookworm's containerd 1.6.20. 2.x builds here
# with CGO_ENABLED=0 (about 5 minutes cold) and runs the e2e's Pods under Debian's runc 1.1.5
# (checked); its restrict_oom_score_adj replaces a runc wrapper on this VM, where root cannot
# lower oom_score_adj. 1.6 is past its end of life and lacks the RuntimeConfig CRI call
# (kubelet then falls back to its own cgroup-driver setting). See docs/real-node.md.
#
# Usage: hack/node-tools.sh            install/build what is missing, print the bin directory
#        hack/node-tools.sh --print    only print the bin directory
#        hack/node-tools.sh --no-apt   skip the Debian packages step
set -euo pipefail

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.env
source "$HACK/versions.env"

CACHE="${EDGEMODEL_CACHE:-$HOME/.cache/edgemodel}"
# NODE_RECIPE: bump it when the way a tool is built changes (not its version), so a warm cache
# builds the new binaries instead of keeping the old ones. 2: CoreDNS with only the Corefile's
# plugins.
NODE_RECIPE=2
KEY="k8s-${K8S_VERSION}_containerd-${CONTAINERD_VERSION}_coredns-${COREDNS_VERSION}_metrics-server-${METRICS_SERVER_VERSION}_recipe-${NODE_RECIPE}"
NODE="$CACHE/node/$KEY"
BIN="$NODE/bin"

APT=1
for arg in "$@"; do
  case "$arg" in
    --print) echo "$BIN"; exit 0 ;;
    --no-apt) APT=0 ;;
    *) echo "usage: $0 [--print] [--no-apt]" >&2; exit 2 ;;
  esac
done

export GOMODCACHE="$CACHE/go/mod"
export GOCACHE="$CACHE/go/build"
export CGO_ENABLED=0
export GOFLAGS="-buildvcs=false -trimpath"
mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE" "$NODE/src"

STEPS=6
STARTED=$SECONDS
# shellcheck disable=SC2034  # read by hack/lib.sh
LOG_TAG=node-tools
# shellcheck disable=SC2034  # read by hack/lib.sh
RUN_LOG_DIR="$NODE/logs"
# shellcheck source=hack/lib.sh
source "$HACK/lib.sh"
step() { log "step $1/$STEPS: $2"; }
have() { [[ -x "$BIN/$1" ]]; }


# ---------------------------------------------------------------------------- 1. Debian packages

install_debs() {
  local missing=() spec name want have_v
  # shellcheck disable=SC2086
  for spec in $NODE_DEB_PACKAGES; do
    name="${spec%%=*}"; want="${spec#*=}"
    have_v=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null | awk '$3 == "installed" {print $4}')
    if [[ -z "$have_v" ]]; then
      missing+=("$spec")
    elif [[ "$have_v" != "$want" ]]; then
      log "  note: $name $have_v installed (tested with $want)"
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then log "  all present"; return 0; fi
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  log "  apt-get install ${missing[*]} (about 1 minute)"
  run_long "apt-get update" $sudo apt-get update -qq
  if ! run_long "apt-get install" env DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends "${missing[@]}"; then
    log "  the pinned versions are not all available; installing the current bookworm versions"
    run_long "apt-get install (unpinned)" env DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends "${missing[@]%%=*}"
  fi
}

# ---------------------------------------------------------------------------- Go builds

wrapper_module() {  # dir module-name
  mkdir -p "$1"
  [[ -f "$1/go.mod" ]] || printf 'module %s\n\ngo 1.26\n' "$2" > "$1/go.mod"
}

build_containerd() {
  if have containerd && have containerd-shim-runc-v2 && have ctr; then log "  cached"; return 0; fi
  local mod="$NODE/src/containerd" pkg=github.com/containerd/containerd/v2
  wrapper_module "$mod" edgemodel.dev/hack/containerd
  local ld="-s -w -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Revision=module-proxy -X $pkg/version.Package=$pkg"
  local tags="no_btrfs,no_devmapper,no_zfs,no_aufs,no_dynamic_plugins"
  log "  go build containerd, containerd-shim-runc-v2, ctr $CONTAINERD_VERSION (about 3-5 min cold, seconds warm)"
  (
    cd "$mod"
    local c
    for c in containerd containerd-shim-runc-v2 ctr; do
      run_long "go get $c" go get "$pkg/cmd/$c@$CONTAINERD_VERSION"
    done
    for c in containerd containerd-shim-runc-v2 ctr; do
      run_long "go build $c" go build -tags "$tags" -ldflags "$ld" -o "$BIN/$c.tmp" "$pkg/cmd/$c"
      mv "$BIN/$c.tmp" "$BIN/$c"
    done
  )
}

# CoreDNS trimmed to the plugins of our Corefile (devtools/edgemodel_dev/harness/addons/coredns.yaml):
# upstream's main blank-imports core/plugin, i.e. every plugin with its cloud SDKs (AWS, Azure,
# GCP, Datadog, etcd, ...). This main imports only coremain, core/dnsserver and the plugins
# below, and sets the execution order to upstream's (core/dnsserver/zdirectives.go) restricted
# to them. Adding a plugin to the Corefile means adding it here, in the right place of the order.
# `coredns -plugins` also lists metadata, prometheus and transfer, which the kubernetes plugin
# imports. CoreDNS keeps its own module versions (k8s.io v0.37.1): moving them to the control
# plane's would not let it reuse the control plane's compiled packages, because CoreDNS needs
# newer x/sys, x/net, grpc, protobuf and logr than Kubernetes v1.37.2, and a compiled package's
# cache key includes its dependencies' selected versions (a replace directive does not count).
COREDNS_PLUGINS="reload ready health errors cache kubernetes loop"

build_coredns() {
  if have coredns; then log "  cached"; return 0; fi
  local mod="$NODE/src/coredns" p imports="" order=""
  wrapper_module "$mod" edgemodel.dev/hack/coredns
  for p in $COREDNS_PLUGINS; do
    imports+=$'\t_ "github.com/coredns/coredns/plugin/'"$p"$'"\n'
    order+="\"$p\", "
  done
  cat > "$mod/main.go" <<GO
// Code generated by hack/node-tools.sh; DO NOT EDIT.

// Command coredns is CoreDNS $COREDNS_VERSION with only the plugins the node's Corefile uses.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

${imports})

func init() {
	if err := dnsserver.SetDirectives([]string{${order%, }}); err != nil {
		panic(err)
	}
}

func main() { coremain.Run() }
GO
  log "  go build coredns $COREDNS_VERSION, plugins: $COREDNS_PLUGINS (about 2 min cold)"
  (
    cd "$mod"
    run_long "go get coredns" go get "github.com/coredns/coredns@$COREDNS_VERSION"
    run_long "go mod tidy coredns" go mod tidy
    run_long "go build coredns" go build -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
      -o "$BIN/coredns.tmp" .
    mv "$BIN/coredns.tmp" "$BIN/coredns"
  )
}

# metrics-server keeps its own k8s.io v0.33.2: on the control plane's v0.37.2 it compiles but
# panics at start ("unable to get openapi models: cannot find model definition for
# io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics"), checked 2026-11-30.
build_metrics_server() {
  if have metrics-server; then log "  cached"; return 0; fi
  local mod="$NODE/src/metrics-server"
  wrapper_module "$mod" edgemodel.dev/hack/metrics-server
  log "  go build metrics-server $METRICS_SERVER_VERSION (about 2-4 min cold)"
  (
    cd "$mod"
    run_long "go get metrics-server" go get -tool "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"
    run_long "go build metrics-server" go build \
      -ldflags "-s -w -X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION" \
      -o "$BIN/metrics-server.tmp" sigs.k8s.io/metrics-server/cmd/metrics-server
    mv "$BIN/metrics-server.tmp" "$BIN/metrics-server"
  )
}

# Another hack/k8s-tools.sh building right now fills the shared Go build cache: wait for it,
# so kubelet and kube-proxy compile the shared Kubernetes packages once, not twice at once.
wait_for_k8s_tools() {
  local t0=$SECONDS n=0
  while pgrep -f 'hack/k8s-tools\.sh' >/dev/null 2>&1; do
    if (( n == 0 )); then log "  hack/k8s-tools.sh is building: waiting for it to finish (shares the Go cache)"; fi
    sleep 1
    n=$((n + 1))
    if (( n % 30 == 0 )); then log "  ... still waiting for hack/k8s-tools.sh ($((SECONDS - t0)) s)"; fi
  done
}

build_kubernetes() {
  local cmds=() c
  for c in kubelet kube-proxy; do have "$c" || cmds+=("$c"); done
  if [[ ${#cmds[@]} -eq 0 ]]; then log "  cached"; return 0; fi
  wait_for_k8s_tools
  local mod="$NODE/src/kubernetes"
  kubernetes_module "$mod"
  local ld
  ld=$(kubernetes_ldflags)
  log "  go build ${cmds[*]} $K8S_VERSION (about 1-2 min each with the control-plane build cache warm)"
  (
    cd "$mod"
    for c in "${cmds[@]}"; do run_long "go get $c" go get "k8s.io/kubernetes/cmd/$c@$K8S_VERSION"; done
    for c in "${cmds[@]}"; do
      run_long "go build $c" go build -ldflags "$ld" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c"
      mv "$BIN/$c.tmp" "$BIN/$c"
    done
  )
}

check_versions() {
  "$BIN/containerd" --version >&2
  "$BIN/kubelet" --version >&2
  "$BIN/kube-proxy" --version >&2
  # sed reads the whole output; `head -n 1` closed the pipe early, the tool could die of
  # SIGPIPE and pipefail failed the step (CI, stop 18: exit 141).
  "$BIN/coredns" -version 2>&1 | sed -n 1p >&2
  "$BIN/metrics-server" --version 2>&1 | sed -n 1p >&2 || true
}

step 1 "Debian packages"
if (( APT )); then install_debs; else log "  skipped (--no-apt)"; fi
step 2 "containerd $CONTAINERD_VERSION"
build_containerd
step 3 "coredns $COREDNS_VERSION"
build_coredns
step 4 "metrics-server $METRICS_SERVER_VERSION"
build_metrics_server
step 5 "kubelet, kube-proxy $K8S_VERSION"
build_kubernetes
step 6 "versions"
check_versions
log "ready in $BIN ($((SECONDS - STARTED)) s)"
echo "$BIN"
