"""Find the pinned control-plane tools: KUBEBUILDER_ASSETS, then PATH, then the build cache.

The cache is filled by ``hack/k8s-tools.sh``; its location is keyed by the versions in
``hack/versions.env``, which this module reads too, so the two never disagree.

I/O: reads the file system only.
"""

from __future__ import annotations

import os
import pathlib
import shutil

__all__ = ["TOOLS", "BinaryNotFoundError", "cache_bin_dir", "find", "repo_root", "versions"]

TOOLS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
)
# Debian ships a far older kubectl on PATH; the harness prefers the pinned one for it.
_CACHE_FIRST = {"kubectl"}


class BinaryNotFoundError(FileNotFoundError):
    """A tool is missing; the message says how to build it."""


def repo_root() -> pathlib.Path:
    here = pathlib.Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "hack" / "versions.env").is_file():
            return parent
    raise FileNotFoundError("hack/versions.env not found above the edgemodel package")


def versions() -> dict[str, str]:
    """The pinned versions from ``hack/versions.env``."""
    result: dict[str, str] = {}
    for line in (repo_root() / "hack" / "versions.env").read_text().splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#") and "=" in entry:
            key, value = entry.split("=", 1)
            result[key] = value
    return result


def cache_bin_dir() -> pathlib.Path:
    v = versions()
    cache = pathlib.Path(os.environ.get("EDGEMODEL_CACHE", pathlib.Path.home() / ".cache" / "edgemodel"))
    key = f"k8s-{v['K8S_VERSION']}_etcd-{v['ETCD_VERSION']}_kwok-{v['KWOK_VERSION']}_helm-{v['HELM_VERSION']}"
    return cache / "tools" / key / "bin"


def find(tool: str) -> pathlib.Path:
    """The path of ``tool``, or :class:`BinaryNotFoundError`."""
    candidates: list[pathlib.Path] = []
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        candidates.append(pathlib.Path(assets) / tool)
    cached = cache_bin_dir() / tool
    on_path = shutil.which(tool)
    if tool in _CACHE_FIRST:
        candidates.append(cached)
        if on_path:
            candidates.append(pathlib.Path(on_path))
    else:
        if on_path:
            candidates.append(pathlib.Path(on_path))
        candidates.append(cached)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise BinaryNotFoundError(
        f"{tool} not found in KUBEBUILDER_ASSETS, PATH or {cached.parent}; run hack/k8s-tools.sh"
    )
