#!/usr/bin/env bash
# Install (or reuse) the tools that prove the EdgeModel alerts (issue 15):
#   prometheus, promtool   Debian's prometheus package (apt-get, only when missing; we are root)
#   kube-state-metrics     KSM_VERSION from hack/versions.env, built through the Go module proxy
#                          with CGO_ENABLED=0 and cached under
#                          ~/.cache/edgemodel/tools/kube-state-metrics-<version>/bin
# The Go module and build caches are those of hack/k8s-tools.sh, so the client-go packages
# the control-plane build compiled are reused.
#
# tests/alerts/ runs promtool on the chart's rendered rules; tests/integration/test_alerts_prometheus.py
# runs Prometheus and kube-state-metrics against the harness (edgemodel_dev.harness.monitoring
# finds the binaries where this script puts them).
#
# Usage: hack/observability-tools.sh            install/build what is missing, print the bin directory
#        hack/observability-tools.sh --print    only print kube-state-metrics' bin directory
set -euo pipefail

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.env
source "$HACK/versions.env"

CACHE="${EDGEMODEL_CACHE:-$HOME/.cache/edgemodel}"
TOOLS="$CACHE/tools/kube-state-metrics-${KSM_VERSION}"
BIN="$TOOLS/bin"

if [[ "${1:-}" == "--print" ]]; then echo "$BIN"; exit 0; fi

STARTED=$SECONDS
# shellcheck disable=SC2034  # read by hack/lib.sh
LOG_TAG=observability-tools
# shellcheck disable=SC2034  # read by hack/lib.sh
RUN_LOG_DIR="$TOOLS/logs"
# shellcheck source=hack/lib.sh
source "$HACK/lib.sh"


as_root() { if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi; }

install_prometheus() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    log "step 1/2: prometheus and promtool present ($(prometheus --version 2>&1 | sed -n 1p))"
    return 0
  fi
  log "step 1/2: installing Debian's prometheus package (apt-get)"
  run_long "apt-get update" as_root apt-get update -qq
  # The package's service is not started in a container without systemd (policy-rc.d); the
  # tests start their own Prometheus on a free port anyway.
  run_long "apt-get install prometheus" as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends prometheus
  log "  $(prometheus --version 2>&1 | sed -n 1p)"
}

build_kube_state_metrics() {
  if [[ -x "$BIN/kube-state-metrics" ]]; then
    log "step 2/2: kube-state-metrics $KSM_VERSION cached in $BIN"
    return 0
  fi
  log "step 2/2: building kube-state-metrics $KSM_VERSION from the Go module proxy (a few minutes cold)"
  export GOMODCACHE="$CACHE/go/mod"
  export GOCACHE="$CACHE/go/build"
  export CGO_ENABLED=0
  export GOFLAGS="-buildvcs=false -trimpath"
  local mod="$TOOLS/src"
  mkdir -p "$BIN" "$mod" "$GOMODCACHE" "$GOCACHE"
  printf 'module edgemodel.dev/hack/kube-state-metrics\n\ngo 1.24\n' > "$mod/go.mod"
  local ld="-s -w -X github.com/prometheus/common/version.Version=${KSM_VERSION#v}"
  ld="$ld -X github.com/prometheus/common/version.Branch=release -X github.com/prometheus/common/version.Revision=$KSM_VERSION"
  (
    cd "$mod"
    run_long "go get kube-state-metrics@$KSM_VERSION" go get "k8s.io/kube-state-metrics/v2@$KSM_VERSION"
    run_long "go build kube-state-metrics" go build -ldflags "$ld" -o "$BIN/kube-state-metrics.tmp" k8s.io/kube-state-metrics/v2
  )
  mv "$BIN/kube-state-metrics.tmp" "$BIN/kube-state-metrics"
}

install_prometheus
build_kube_state_metrics
log "ready in $((SECONDS - STARTED)) s: prometheus $(command -v prometheus), kube-state-metrics $BIN"
echo "$BIN"
