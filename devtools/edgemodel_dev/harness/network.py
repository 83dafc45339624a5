"""A private network for a real node: one network namespace with a bridge, and a veth to this host.

Everything a real node sends stays on this machine:

- the node's processes (the control plane, containerd, kubelet, kube-proxy) run inside a
  network namespace the harness creates, and Pods get their own namespaces from CNI,
  attached to a bridge inside it;
- that namespace has no default route and no link to any real interface: its only way out
  is a veth pair whose other end sits in this host's namespace, on an address of the
  bridge's own subnet, with a route to the Service range through the node;
- Pods get routes for the Pod and Service ranges only, so anything else is unreachable.

The ranges are private /24s picked at random among those no route on this host uses, so
two harnesses can run side by side. :meth:`NodeNetwork.delete` removes the namespace (and
with it the bridge, the veth pair, the routes and every rule kube-proxy wrote).

I/O: runs ``ip`` and ``sysctl``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import pathlib
import random
import secrets
import subprocess
import sys

__all__ = ["NodeNetwork"]

_POD_PREFIX = "10.123"
_SERVICE_PREFIX = "10.124"


def _run(*argv: str) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _routes_in_use() -> list[ipaddress.IPv4Network]:
    used: list[ipaddress.IPv4Network] = []
    for route in json.loads(_run("ip", "-j", "-4", "route", "show", "table", "all") or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            try:
                used.append(ipaddress.IPv4Network(dst, strict=False))
            except ValueError:
                continue
    return used


@dataclasses.dataclass
class NodeNetwork:
    """The namespace, the bridge and the ranges of one real node."""

    name: str
    pod_cidr: ipaddress.IPv4Network
    service_cidr: ipaddress.IPv4Network
    bridge: str = "embr0"
    created: bool = False

    @classmethod
    def pick(cls) -> NodeNetwork:
        """Free ranges and a fresh name; nothing is created yet."""
        used = _routes_in_use()
        octets = list(range(1, 255))
        random.shuffle(octets)
        for third in octets:
            pods = ipaddress.IPv4Network(f"{_POD_PREFIX}.{third}.0/24")
            services = ipaddress.IPv4Network(f"{_SERVICE_PREFIX}.{third}.0/24")
            if not any(pods.overlaps(u) or services.overlaps(u) for u in used):
                return cls(name=f"emnode-{secrets.token_hex(3)}", pod_cidr=pods, service_cidr=services)
        raise RuntimeError("no free private /24 for a node network")

    # ------------------------------------------------------------------ addresses

    @property
    def node_ip(self) -> str:
        """The node's address on the bridge: the Pods' gateway, the API server's and kubelet's."""
        return str(self.pod_cidr.network_address + 1)

    @property
    def host_ip(self) -> str:
        """This host's address on the bridge, where tests reach the node from."""
        return str(self.pod_cidr.broadcast_address - 1)

    @property
    def pod_range(self) -> tuple[str, str]:
        """First and last address CNI hands out to Pods."""
        return str(self.pod_cidr.network_address + 10), str(self.pod_cidr.broadcast_address - 10)

    @property
    def kubernetes_service_ip(self) -> str:
        return str(self.service_cidr.network_address + 1)

    @property
    def dns_service_ip(self) -> str:
        return str(self.service_cidr.network_address + 10)

    @property
    def netns_path(self) -> pathlib.Path:
        return pathlib.Path("/run/netns") / self.name

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the node's network namespace, and nothing else of it changed.

        ``nsenter --net`` (not ``ip netns exec``): the process keeps this host's mount
        namespace, so the mounts kubelet makes for volumes are the ones containerd sees.
        """
        return ["nsenter", f"--net={self.netns_path}", "--", *argv]

    def http_ok(self, url: str) -> bool:
        """Whether a GET of ``url`` from inside the namespace answers 200 (for its loopback)."""
        code = f"import urllib.request as u; u.urlopen({url!r}, timeout=2)"
        result = subprocess.run(
            self.wrap([sys.executable, "-c", code]), capture_output=True, check=False, timeout=15
        )
        return result.returncode == 0

    # ------------------------------------------------------------------ lifecycle

    def create(self) -> NodeNetwork:
        host_end, node_end = f"emh{self.name[-6:]}", f"emn{self.name[-6:]}"
        _run("ip", "netns", "add", self.name)
        self.created = True
        ns = ("ip", "-n", self.name)
        _run(*ns, "link", "set", "lo", "up")
        _run(*ns, "link", "add", self.bridge, "type", "bridge")
        _run(*ns, "addr", "add", f"{self.node_ip}/{self.pod_cidr.prefixlen}", "dev", self.bridge)
        _run(*ns, "link", "set", self.bridge, "up")
        _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", node_end, "netns", self.name)
        _run(*ns, "link", "set", node_end, "master", self.bridge)
        _run(*ns, "link", "set", node_end, "up")
        _run("ip", "addr", "add", f"{self.host_ip}/{self.pod_cidr.prefixlen}", "dev", host_end)
        _run("ip", "link", "set", host_end, "up")
        _run("ip", "route", "add", str(self.service_cidr), "via", self.node_ip, "dev", host_end)
        # Inside the namespace only: forward between bridge ports (Service traffic after
        # kube-proxy's DNAT), and let bridged frames through iptables so replies are un-NATed.
        _run(
            "ip", "netns", "exec", self.name, "sysctl", "-q", "-w",
            "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1",
        )  # fmt: skip
        return self

    def delete(self) -> None:
        """Remove the namespace, its bridge, the veth pair and every route and rule in it."""
        if not self.created:
            return
        # Deleting the namespace deletes the veth end inside it, and so the pair.
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, check=False, timeout=30)
        self.created = False

    def cni_config(self, ipam_dir: pathlib.Path) -> dict[str, object]:
        """A CNI conflist: a bridge on this network, host-local addresses (kept in ``ipam_dir``), portmap."""
        first, last = self.pod_range
        return {
            "cniVersion": "1.0.0",
            "name": "edgemodel-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "isDefaultGateway": False,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(ipam_dir),
                        "ranges": [
                            [
                                {
                                    "subnet": str(self.pod_cidr),
                                    "rangeStart": first,
                                    "rangeEnd": last,
                                    "gateway": self.node_ip,
                                }
                            ]
                        ],
                        # No default route: only the Pod and Service ranges are reachable.
                        "routes": [{"dst": str(self.service_cidr), "gw": self.node_ip}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
