#!/usr/bin/env bash
# A real node for the e2e (issue 11), by hand: containerd 2.x + runc + CNI bridge + kubelet, all
# state under one directory, every server on 127.0.0.1 or on the node's own bridge. This is the
# reference the harness fixture follows; docs/real-node.md says why each setting is there.
#
#   hack/e2e-node.sh up   --dir DIR [--kubeconfig FILE] [--name NODE] [--no-import]
#       Writes DIR/containerd.toml, DIR/cni/net.d/10-edgemodel.conflist, DIR/kubelet.yaml,
#       starts containerd (socket DIR/containerd.sock), imports the images of hack/images.sh
#       into its k8s.io namespace, and starts kubelet (logs in DIR/logs). Without --kubeconfig
#       kubelet runs standalone and starts the static Pods in DIR/manifests.
#   hack/e2e-node.sh down --dir DIR
#       Stops kubelet and containerd (and their shims), removes the Pods' containers and
#       network namespaces, unmounts everything under DIR, deletes the bridge and the pod
#       cgroups. Safe to run twice.
#
# Environment: EDGEMODEL_NODE_BRIDGE (embr0), EDGEMODEL_NODE_CGROUP_ROOT (/edgemodel-<bridge>),
# EDGEMODEL_POD_CIDR (10.244.77.0/24),
# EDGEMODEL_SERVICE_CIDR (10.0.0.0/24, the harness control plane's), EDGEMODEL_CLUSTER_DNS
# (10.0.0.10).
set -euo pipefail

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BRIDGE="${EDGEMODEL_NODE_BRIDGE:-embr0}"
POD_CIDR="${EDGEMODEL_POD_CIDR:-10.244.77.0/24}"
SERVICE_CIDR="${EDGEMODEL_SERVICE_CIDR:-10.0.0.0/24}"
CLUSTER_DNS="${EDGEMODEL_CLUSTER_DNS:-10.0.0.10}"
CNI_BIN=/usr/lib/cni
# Every name below is the node's own, so two nodes (a developer's and CI's, or two test runs)
# on one machine do not touch each other's bridge, Pod cgroups or iptables rules. Two kubelets
# with the same cgroupRoot would each remove the other's Pod cgroups as orphans.
CGROUP_ROOT="${EDGEMODEL_NODE_CGROUP_ROOT:-/edgemodel-$BRIDGE}"
NETWORK="edgemodel-$BRIDGE"

log() { printf '[e2e-node] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for() {  # what seconds command...
  local what="$1" secs="$2"; shift 2
  local i
  for ((i = 0; i < secs * 2; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  die "$what not ready after $secs s"
}

write_configs() {
  local dir="$1" bin="$3" pause="$4"
  mkdir -p "$dir"/{containerd/root,containerd/state,containerd/opt,cni/net.d,kubelet,manifests,logs,pod-logs}
  # containerd 2.x, config version 3. restrict_oom_score_adj: this VM does not let even root
  # lower oom_score_adj, and kubelet asks -998 for every sandbox; clamping at containerd's own
  # score keeps runc from failing ("nsexec: failed to update /proc/self/oom_score_adj").
  cat > "$dir/containerd.toml" <<EOF
version = 3
# Nothing from /etc/containerd/conf.d (containerd's default imports) may change this node.
imports = []
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$dir/containerd.sock"

[ttrpc]
  address = "$dir/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = "$dir/containerd/opt"

  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '$pause'

  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_unprivileged_ports = true
    enable_unprivileged_icmp = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        runtime_path = '$bin/containerd-shim-runc-v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '${EDGEMODEL_RUNC:-$(command -v runc)}'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['$CNI_BIN']
      conf_dir = '$dir/cni/net.d'
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
EOF
  # Pods on a bridge of their own. No default route: the pod CIDR is on-link, host-local adds
  # one route, for the Service CIDR via the bridge; no masquerading. So nothing from a Pod can
  # leave this machine. (A route for the pod CIDR via the gateway would only send pod-to-pod
  # traffic through the host.)
  cat > "$dir/cni/net.d/10-edgemodel.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "$SERVICE_CIDR"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  local healthz auth
  healthz=$(free_port)
  # With an API server: its tokens (webhook) and, with KUBELET_CLIENT_CA, client certificates
  # signed by that CA; standalone: no API server to ask, so anyone on 127.0.0.1.
  if [[ -n "$5" ]]; then
    auth="authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}"
    if [[ -n "${KUBELET_CLIENT_CA:-}" ]]; then auth="$auth
  x509: {clientCAFile: $KUBELET_CLIENT_CA}"; fi
    auth="$auth
authorization:
  mode: Webhook"
  else
    auth="authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow"
  fi
  # failCgroupV1: this VM runs cgroup v1 (hybrid); kubelet >= 1.35 refuses v1 unless told.
  cat > "$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
failSwapOn: false
containerRuntimeEndpoint: unix://$dir/containerd.sock
imageServiceEndpoint: unix://$dir/containerd.sock
staticPodPath: $dir/manifests
podLogsDir: $dir/pod-logs
port: ${KUBELET_PORT:-$(free_port)}
readOnlyPort: 0
# address: the bridge gateway, given as --address by cmd_up (flags win over this file)
healthzBindAddress: 127.0.0.1
healthzPort: $healthz
$auth
clusterDomain: cluster.local
clusterDNS: [$CLUSTER_DNS]
resolvConf: ""
registerNode: true
maxPods: 50
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
protectKernelDefaults: false
rotateCertificates: false
serverTLSBootstrap: false
EOF
  echo "$healthz" > "$dir/kubelet.healthz-port"
}

cmd_up() {
  local dir="" kubeconfig="" name="e2e-node" import=1
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dir) dir="$2"; shift 2 ;;
      --kubeconfig) kubeconfig="$2"; shift 2 ;;
      --name) name="$2"; shift 2 ;;
      --no-import) import=0; shift ;;
      *) die "up: unknown argument $1" ;;
    esac
  done
  [[ -n "$dir" ]] || die "up needs --dir"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  local bin pause
  bin="$("$HACK/node-tools.sh" --print)"
  [[ -x "$bin/kubelet" && -x "$bin/containerd" ]] || die "node tools missing in $bin: run hack/node-tools.sh"
  pause="$("$HACK/images.sh" names | sed -n 's/^PAUSE=//p')"
  write_configs "$dir" "$name" "$bin" "$pause" "$kubeconfig"
  # Remember the shim sockets that exist already, so down removes only ours.
  ls /run/containerd/s 2>/dev/null | sort > "$dir/shim-sockets.before" || true

  log "containerd: $dir/containerd.sock (log $dir/logs/containerd.log)"
  PATH="$bin:$PATH" setsid "$bin/containerd" --config "$dir/containerd.toml" \
    >"$dir/logs/containerd.log" 2>&1 < /dev/null &
  echo $! > "$dir/containerd.pid"
  wait_for containerd 30 "$bin/ctr" --address "$dir/containerd.sock" version
  if (( import )); then "$HACK/images.sh" import --address "$dir/containerd.sock" --ctr "$bin/ctr"; fi

  # The bridge, made before kubelet so that kubelet can serve on it: the node's IP is the
  # bridge's gateway address (kubelet refuses a loopback node IP: "nodeIP can't be loopback
  # address", and then the Node has no address, so no logs/exec and no metrics-server).
  # The CNI bridge plugin then finds it and keeps it.
  local gw prefix
  read -r gw prefix < <(python3 -c 'import ipaddress,sys; n=ipaddress.ip_network(sys.argv[1]); print(n.network_address+1, n.prefixlen)' "$POD_CIDR")
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$gw/$prefix" dev "$BRIDGE"
    ip link set "$BRIDGE" up
  fi
  # kubelet wants its cgroupRoot to exist in every hierarchy (cgroup v1 here).
  local cg
  for cg in /sys/fs/cgroup/*/ /sys/fs/cgroup/unified/; do
    [[ -e "$cg/cgroup.procs" ]] && mkdir -p "$cg${CGROUP_ROOT#/}"
  done
  local args=(--config "$dir/kubelet.yaml" --root-dir "$dir/kubelet" --cert-dir "$dir/kubelet/pki"
    --hostname-override "$name" --node-ip "$gw" --address "$gw" --v "${KUBELET_V:-1}")
  [[ -n "$kubeconfig" ]] && args+=(--kubeconfig "$kubeconfig")
  log "kubelet: node $name${kubeconfig:+, API server of $kubeconfig} (log $dir/logs/kubelet.log)"
  setsid "$bin/kubelet" "${args[@]}" >"$dir/logs/kubelet.log" 2>&1 < /dev/null &
  echo $! > "$dir/kubelet.pid"
  wait_for kubelet 60 python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$(cat "$dir/kubelet.healthz-port")/healthz', timeout=2)"
  log "node up (state in $dir)"
}

stop_pid() {  # pidfile
  [[ -f "$1" ]] || return 0
  local pid
  pid=$(cat "$1")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

cmd_down() {
  local dir=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dir) dir="$2"; shift 2 ;;
      *) die "down: unknown argument $1" ;;
    esac
  done
  [[ -n "$dir" && -d "$dir" ]] || die "down needs --dir of a node"
  dir="$(cd "$dir" && pwd)"
  local bin
  bin="$("$HACK/node-tools.sh" --print)"
  stop_pid "$dir/kubelet.pid"
  # Remove the Pods through CRI while containerd still runs, so CNI DEL frees IPs and veths.
  if [[ -S "$dir/containerd.sock" ]] && command -v crictl >/dev/null 2>&1; then
    crictl --runtime-endpoint "unix://$dir/containerd.sock" rmp -fa >/dev/null 2>&1 || true
  fi
  if [[ -S "$dir/containerd.sock" ]]; then
    local ids id
    ids=$("$bin/ctr" --address "$dir/containerd.sock" -n k8s.io tasks ls -q 2>/dev/null || true)
    for id in $ids; do "$bin/ctr" --address "$dir/containerd.sock" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
  fi
  stop_pid "$dir/containerd.pid"
  # Shims whose bundles live under this node's state directory.
  local p
  for p in $(pgrep -f containerd-shim-runc-v2 || true); do
    if tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -F -- "$dir/containerd.sock" >/dev/null; then kill -9 "$p" 2>/dev/null || true; fi
  done
  # Containers' processes still alive (runc state under the shim's root): kill by cgroup.
  local cg
  for cg in /sys/fs/cgroup/*"$CGROUP_ROOT" /sys/fs/cgroup/unified"$CGROUP_ROOT"; do
    [[ -d "$cg" ]] || continue
    # shellcheck disable=SC2038  # cgroup.procs holds only PIDs
    find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  done
  sleep 0.5
  # Network namespaces of the Pods (under the state dir, netns_mounts_under_state_dir).
  local m
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  # The pod bridge and any veth left on it.
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    local v
    for v in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do ip link del "$v" 2>/dev/null || true; done
    ip link del "$BRIDGE" 2>/dev/null || true
  fi
  # portmap's chains, if it made any.
  local t
  for t in nat filter; do
    iptables -t "$t" -S 2>/dev/null | grep -E 'CNI-(HOSTPORT|DN-)' | grep -F "\\\"$NETWORK\\\"" | grep -- '^-A' | sed 's/^-A/-D/' |
      while read -r rule; do eval "iptables -t $t $rule" 2>/dev/null || true; done || true
  done
  # Pod cgroups kubelet made (cgroupfs driver, cgroup v1 and the unified tree).
  # (a cgroup whose killed processes are still exiting cannot be removed yet: retry a while)
  local _
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    for cg in /sys/fs/cgroup/*"$CGROUP_ROOT" /sys/fs/cgroup/unified"$CGROUP_ROOT"; do
      if [[ -d "$cg" ]]; then find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true; fi
    done
    compgen -G "/sys/fs/cgroup/*$CGROUP_ROOT" >/dev/null || break
    sleep 0.5
  done
  # Shim sockets we added; /var/log/containers links into this node's pod logs.
  if [[ -f "$dir/shim-sockets.before" && -d /run/containerd/s ]]; then
    comm -13 "$dir/shim-sockets.before" <(ls /run/containerd/s | sort) | while read -r s; do rm -f "/run/containerd/s/$s"; done
  fi
  find /var/log/containers -maxdepth 1 -type l -lname "$dir/*" -delete 2>/dev/null || true
  log "node down ($dir)"
}

# Sourced (for its functions): stop here.
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  *) echo "usage: $0 up --dir DIR [--kubeconfig FILE] [--name NODE] [--no-import] | down --dir DIR" >&2; exit 2 ;;
esac
