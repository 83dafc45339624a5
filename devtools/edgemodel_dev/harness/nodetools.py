"""What a real node runs: the binaries of ``hack/node-tools.sh`` and the images of ``hack/images.sh``.

Both scripts are the single source of names, versions and cache locations; this module
asks them (``--print``, ``names``) rather than repeating their rules.

I/O: runs the two scripts and reads the file system.
"""

from __future__ import annotations

import functools
import os
import pathlib
import shutil
import subprocess

from edgemodel_dev.harness import binaries

__all__ = [
    "NodeToolsMissingError",
    "archives",
    "bin_dir",
    "cni_bin_dir",
    "find",
    "image",
    "runc",
    "unavailable_reason",
]

_CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
_BINARIES = (
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "kubelet",
    "kube-proxy",
    "coredns",
    "metrics-server",
)


class NodeToolsMissingError(FileNotFoundError):
    """A part of the real node is missing; the message says which script makes it."""


def _script(name: str, *args: str) -> str:
    result = subprocess.run(
        ["bash", str(binaries.repo_root() / "hack" / name), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise NodeToolsMissingError(f"hack/{name} {' '.join(args)} failed: {result.stderr.strip()[-400:]}")
    return result.stdout


@functools.cache
def bin_dir() -> pathlib.Path:
    """Where ``hack/node-tools.sh`` puts containerd, kubelet, kube-proxy, coredns and metrics-server."""
    return pathlib.Path(_script("node-tools.sh", "--print").strip())


def find(tool: str) -> pathlib.Path:
    path = bin_dir() / tool
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise NodeToolsMissingError(f"{tool} is not in {path.parent}; run hack/node-tools.sh")
    return path


def runc() -> pathlib.Path:
    found = shutil.which("runc")
    if found is None:
        raise NodeToolsMissingError("runc is not on PATH; run hack/node-tools.sh (it installs Debian's runc)")
    return pathlib.Path(found)


def cni_bin_dir() -> pathlib.Path:
    """Debian's CNI plugins (containernetworking-plugins)."""
    return pathlib.Path("/usr/lib/cni")


@functools.cache
def _names() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in _script("images.sh", "names").splitlines():
        key, _, value = line.partition("=")
        out[key.strip().lower().replace("_", "-")] = value.strip()
    return out


def image(role: str) -> str:
    """The local image name of ``role``: edgemodel, broker, pause, coredns or metrics-server."""
    return _names()[role]


def archives() -> dict[str, pathlib.Path]:
    """Image name -> the archive ``hack/images.sh`` exported for the current inputs.

    Raises :class:`NodeToolsMissingError` if any is missing (run ``hack/images.sh``).
    """
    found: dict[str, pathlib.Path] = {}
    for line in _script("images.sh", "--print").splitlines():
        name, _, path = line.partition(" ")
        archive = pathlib.Path(path.strip())
        if name == image("base"):
            continue  # only a build input
        if not archive.is_file():
            raise NodeToolsMissingError(f"the image {name} is not built ({archive}); run hack/images.sh")
        found[name] = archive
    return found


def unavailable_reason() -> str | None:
    """Why a real node cannot start on this machine, or None if it can."""
    if os.geteuid() != 0:
        return "a real node needs root (containerd, kubelet, network namespaces)"
    for tool in ("nsenter", "ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH"
    if not pathlib.Path("/sys/fs/cgroup").is_dir():
        return "no cgroup file system at /sys/fs/cgroup"
    missing = [p for p in _CNI_PLUGINS if not (cni_bin_dir() / p).is_file()]
    if missing:
        return f"CNI plugins missing from {cni_bin_dir()}: {', '.join(missing)}; run hack/node-tools.sh"
    try:
        for tool in _BINARIES:
            find(tool)
        runc()
        archives()
    except NodeToolsMissingError as exc:
        return str(exc)
    return None
