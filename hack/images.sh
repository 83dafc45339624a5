#!/usr/bin/env bash
# Build the images of the real e2e node without any registry, export each as a docker-archive,
# and import them into containerd's k8s.io namespace (issue 11).
#
#   localhost/edgemodel/debian-python:<suite>   base: Debian <suite> + python3 (3.11) + venv +
#                                                ca-certificates, from this machine's apt sources
#   localhost/edgemodel/edgemodel:e2e           the repo's Dockerfile, BASE_IMAGE = the base above
#   localhost/edgemodel/mosquitto:e2e           the managed broker: Debian's mosquitto package
#   localhost/edgemodel/pause:e2e               the Pod sandbox image (a static Go pause program)
#   localhost/edgemodel/coredns:<version>       static coredns in a scratch image
#   localhost/edgemodel/metrics-server:<version> static metrics-server in a scratch image
#   localhost/edgemodel/mlflow:v<version>       examples/mlflow.yaml's MLflow release from PyPI
#                                                (hack/mlflow.Dockerfile) on the base above
#
# Builder: Debian's buildah with --storage-driver vfs and --isolation chroot, storage under
# ~/.cache/edgemodel/buildah. Archives: ~/.cache/edgemodel/images/<name>-<key>.tar, where
# <key> hashes everything the image is made from, so a re-run with nothing changed only
# hashes the inputs and prints the paths.
#
# pip inside the Dockerfile build reaches PyPI the way this machine does: a pip.conf made
# from this machine's pip configuration (pip config list, PIP_* variables) and this machine's
# CA bundle are bind-mounted into every RUN step (buildah bud --volume) as root's pip user
# config, /root/.config/pip/. The mount goes over /root, which every base has already, because
# buildah 1.28 leaves an empty placeholder file or directory in the layer for a mount target
# that did not exist (an empty /etc/pip.conf, for one). Nothing of it is written into a layer;
# the script checks the image config, history and files for it.
#
# Usage: hack/images.sh [build]                     build what is missing; print NAME ARCHIVE SIZE
#        hack/images.sh --print                     print NAME ARCHIVE of the current inputs
#        hack/images.sh names                       print NAME=IMAGE lines (for the harness)
#        hack/images.sh import --address SOCKET [--ctr PATH]
#                                                   build what is missing, then ctr -n k8s.io import
set -euo pipefail

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HACK/.." && pwd)"
# shellcheck source=hack/versions.env
source "$HACK/versions.env"

CACHE="${EDGEMODEL_CACHE:-$HOME/.cache/edgemodel}"
OUT="$CACHE/images"
WORK="$CACHE/images/work"
STORE="$CACHE/buildah"
SCRIPT_REV=1   # bump when this script changes how an image is made
SUITE="$IMAGE_DEBIAN_SUITE"
PREFIX="localhost/edgemodel"

IMG_BASE="$PREFIX/debian-python:$SUITE"
IMG_PROJECT="$PREFIX/edgemodel:e2e"
IMG_BROKER="$PREFIX/mosquitto:e2e"
IMG_PAUSE="$PREFIX/pause:e2e"
IMG_COREDNS="$PREFIX/coredns:$COREDNS_VERSION"
IMG_METRICS="$PREFIX/metrics-server:$METRICS_SERVER_VERSION"
# The MLflow release examples/mlflow.yaml pins, so the example and this image never disagree.
MLFLOW_VERSION="$(sed -n 's|^ *image: ghcr.io/mlflow/mlflow:v\([0-9.]*\)$|\1|p' "$REPO/examples/mlflow.yaml")"
IMG_MLFLOW="$PREFIX/mlflow:v$MLFLOW_VERSION"

# shellcheck disable=SC2034  # read by hack/lib.sh
LOG_TAG=images
# shellcheck disable=SC2034  # read by hack/lib.sh
RUN_LOG_DIR="$WORK/logs"
# shellcheck source=hack/lib.sh
source "$HACK/lib.sh"
die() { log "ERROR: $*"; exit 1; }

bah() { buildah --root "$STORE/root" --runroot "$STORE/run" --storage-driver vfs "$@"; }


hash_text() { sha256sum | cut -c1-16; }

# ---------------------------------------------------------------------------- inputs and keys

# The Debian archive entries of this machine's apt sources for $SUITE (its main archive and
# security archive, the ones signed by Debian's keyring), as a one-line-style sources.list.
debian_sources() {
  python3 - "$SUITE" <<'PY'
import glob, re, sys
suite = sys.argv[1]
out = []
def keep(suites, signed):
    return any(s == suite or s.startswith(suite + "-") for s in suites) and (
        not signed or "debian-archive-keyring" in signed)
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for block in re.split(r"\n\s*\n", open(path).read()):
        fields, key = {}, None
        for line in block.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        if "deb" not in fields.get("Types", "").split():
            continue
        suites = fields.get("Suites", "").split()
        if not keep(suites, fields.get("Signed-By", "")):
            continue
        for uri in fields.get("URIs", "").split():
            for s in suites:
                out.append(f"deb {uri} {s} {fields.get('Components', 'main')}")
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 4 and words[0] == "deb" and keep([words[2]], "") and "debian" in words[1]:
            out.append(" ".join(words))
if not out:
    sys.exit(f"no Debian {suite} entries in this machine's apt sources")
print("\n".join(dict.fromkeys(out)))
PY
}

# What the official slim Python image has besides Python: libstdc++6 (numpy's wheels need it),
# netbase, tzdata; passwd for the Dockerfile's groupadd/useradd.
BASE_PACKAGES="python3,python3-venv,ca-certificates,libstdc++6,netbase,tzdata,passwd"
BROKER_PACKAGES="mosquitto"
# Leave documentation, man pages and translations out of the Debian images.
DPKG_EXCLUDES=(--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*')

mmdebstrap_version() { dpkg-query -W -f='${Version}' mmdebstrap 2>/dev/null || echo none; }

key_base() {
  { echo "rev=$SCRIPT_REV suite=$SUITE pkgs=$BASE_PACKAGES mmdebstrap=$(mmdebstrap_version)"
    printf '%s\n' "${DPKG_EXCLUDES[@]}"; debian_sources; } | hash_text
}

key_broker() {
  { echo "rev=$SCRIPT_REV suite=$SUITE pkgs=$BROKER_PACKAGES mmdebstrap=$(mmdebstrap_version)"
    printf '%s\n' "${DPKG_EXCLUDES[@]}"; debian_sources; } | hash_text
}

# The files of the Docker build context that .dockerignore lets in (its "!" lines).
project_context_files() {
  local pattern
  (cd "$REPO" && while read -r pattern; do
    pattern="${pattern#!}"; pattern="${pattern%/}"
    [[ -e "$pattern" ]] || continue
    find "$pattern" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' \
      ! -path '*/.mypy_cache/*' ! -path '*/.ruff_cache/*' ! -path '*/.pytest_cache/*'
  done < <(grep -E '^!' .dockerignore) | LC_ALL=C sort)
}

key_project() {
  { echo "rev=$SCRIPT_REV base=$(key_base)"
    (cd "$REPO" && sha256sum Dockerfile .dockerignore)
    (cd "$REPO" && project_context_files | xargs -d '\n' sha256sum); } | hash_text
}

PAUSE_GO='package main

// The sandbox ("pause") process of the e2e node: it holds the Pod'"'"'s namespaces, reaps
// children, and exits on SIGINT or SIGTERM.

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
'

key_pause() { { echo "rev=$SCRIPT_REV"; echo "$PAUSE_GO"; go version; } | hash_text; }

NODE_BIN=""
node_bin() {
  [[ -n "$NODE_BIN" ]] || NODE_BIN="$("$HACK/node-tools.sh" --print)"
  echo "$NODE_BIN"
}
key_binary() {  # binary name
  local b
  b="$(node_bin)/$1"
  [[ -x "$b" ]] || die "$b is missing: run hack/node-tools.sh first"
  { echo "rev=$SCRIPT_REV"; sha256sum < "$b"; } | hash_text
}

archive() {  # short-name key
  echo "$OUT/$1-$2.tar"
}

# ---------------------------------------------------------------------------- builders

# Load an image into buildah's storage from its archive when the storage lost it.
ensure_loaded() {  # image archive
  bah inspect --type image "$1" >/dev/null 2>&1 && return 0
  [[ -f "$2" ]] || die "$2 is missing"
  local id
  id=$(bah pull --quiet "docker-archive:$2")
  bah tag "$id" "$1"
  log "  loaded $1 from $2"
}

export_image() {  # image archive
  rm -f "$2.tmp"
  run_long "export $1" bah push --quiet "$1" "docker-archive:$2.tmp:$1"
  mv "$2.tmp" "$2"
}

commit_rootfs() {  # image rootfs-tarball archive cmd... (config is set by the caller via BUILDAH_CONFIG)
  local image="$1" tarball="$2" out="$3"
  local ctr
  ctr=$(bah from --quiet scratch)
  bah add --quiet "$ctr" "$tarball" / >/dev/null
  bah config "${BUILDAH_CONFIG[@]}" "$ctr"
  bah commit --quiet --rm "$ctr" "$image" >/dev/null
  export_image "$image" "$out"
}

debian_rootfs() {  # packages out.tar
  local sources="$WORK/debian-$SUITE.list"
  debian_sources > "$sources"
  run_long "mmdebstrap $1" mmdebstrap --quiet --variant=essential --include="$1" \
    --format=tar --aptopt='APT::Install-Recommends "false"' "${DPKG_EXCLUDES[@]}" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/debconf/*-old "$1"/var/log/*.log "$1"/var/log/apt' \
    "$SUITE" "$2" "$sources"
}

build_base() {  # archive
  log "base image $IMG_BASE: mmdebstrap $SUITE + $BASE_PACKAGES (about 1 min)"
  debian_rootfs "$BASE_PACKAGES" "$WORK/base-rootfs.tar"
  BUILDAH_CONFIG=(--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8
    --cmd '["python3"]' --label "org.opencontainers.image.title=edgemodel e2e base (Debian $SUITE, python3)")
  commit_rootfs "$IMG_BASE" "$WORK/base-rootfs.tar" "$1"
  rm -f "$WORK/base-rootfs.tar"
}

build_broker() {  # archive
  log "broker image $IMG_BROKER: mmdebstrap $SUITE + $BROKER_PACKAGES (about 1 min)"
  local hook='mkdir -p "$1"/mosquitto/config "$1"/mosquitto/auth "$1"/mosquitto/data && chown 1883:1883 "$1"/mosquitto/data "$1"/mosquitto/auth'
  local sources="$WORK/debian-$SUITE.list"
  debian_sources > "$sources"
  run_long "mmdebstrap $BROKER_PACKAGES" mmdebstrap --quiet --variant=essential --include="$BROKER_PACKAGES" \
    --format=tar --aptopt='APT::Install-Recommends "false"' "${DPKG_EXCLUDES[@]}" \
    --customize-hook="$hook" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/debconf/*-old "$1"/var/log/*.log "$1"/var/log/apt' \
    "$SUITE" "$WORK/broker-rootfs.tar" "$sources"
  # Debian installs the broker as /usr/sbin/mosquitto: PATH has /usr/sbin, so the operator's
  # command ["mosquitto", "-c", ...] and the init container's mosquitto_passwd both resolve.
  BUILDAH_CONFIG=(--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --user 1883:1883
    --port 1883 --cmd '["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]'
    --label "org.opencontainers.image.title=edgemodel e2e broker (Debian $SUITE mosquitto)")
  commit_rootfs "$IMG_BROKER" "$WORK/broker-rootfs.tar" "$1"
  rm -f "$WORK/broker-rootfs.tar"
}

# A pip.conf for the build made from this machine's pip configuration: every `pip config list`
# entry (files and PIP_* variables), with the CA bundle path rewritten to the mounted copy.
build_pip_conf() {  # out-dir
  local dir="$1"
  mkdir -p "$dir"
  mkdir -p "$dir/home/.config/pip"
  python3 - "$dir/home/.config/pip" <<'PY'
import os, shutil, ssl, subprocess, sys
out = sys.argv[1]
# `pip config list` shows every setting pip would use here: its config files and PIP_* variables
# (as ":env:.name"). Variables win over files, as in pip.
proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
if proc.returncode != 0:
    proc = subprocess.run(["pip", "config", "list"], capture_output=True, text=True)
settings = {}
for line in sorted(proc.stdout.splitlines(), key=lambda l: l.startswith(":env:")):
    key, _, value = line.partition("=")
    settings[key.rsplit(".", 1)[-1]] = value.strip().strip("'\"")
ca = settings.pop("cert", "") or ssl.get_default_verify_paths().cafile or ""
links = settings.pop("find-links", "")
if links and os.path.isdir(links) and os.listdir(links):
    print(f"[images]   note: pip find-links {links} is not mounted into the build; ignored", file=sys.stderr)
lines = ["[global]"] + [f"{k} = {v}" for k, v in sorted(settings.items())]
if ca and os.path.isfile(ca):
    shutil.copyfile(ca, os.path.join(out, "ca.crt"))
    lines.append("cert = /root/.config/pip/ca.crt")
else:
    open(os.path.join(out, "ca.crt"), "w").close()
open(os.path.join(out, "pip.conf"), "w").write("\n".join(lines) + "\n")
PY
}

build_project() {  # archive
  log "project image $IMG_PROJECT: Dockerfile with BASE_IMAGE=$IMG_BASE (about 3-6 min cold)"
  local pipdir="$WORK/pip"
  build_pip_conf "$pipdir"
  local version revision
  version=$(python3 -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$REPO/pyproject.toml")
  revision=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
  run_long "buildah bud $IMG_PROJECT" bah bud --isolation chroot --layers=false --force-rm --quiet \
    --build-arg "BASE_IMAGE=$IMG_BASE" --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
    --volume "$pipdir/home:/root:ro" \
    --tag "$IMG_PROJECT" --file "$REPO/Dockerfile" "$REPO"
  check_no_build_settings "$IMG_PROJECT" "$pipdir/home/.config/pip/pip.conf"
  export_image "$IMG_PROJECT" "$1"
}

key_mlflow() {
  { echo "rev=$SCRIPT_REV base=$(key_base) mlflow=$MLFLOW_VERSION"; (cd "$HACK" && sha256sum mlflow.Dockerfile); } | hash_text
}

build_mlflow() {  # archive
  log "MLflow image $IMG_MLFLOW: hack/mlflow.Dockerfile, mlflow==$MLFLOW_VERSION from PyPI (about 3 min cold)"
  local pipdir="$WORK/pip"
  build_pip_conf "$pipdir"
  run_long "buildah bud $IMG_MLFLOW" bah bud --isolation chroot --layers=false --force-rm --quiet \
    --build-arg "BASE_IMAGE=$IMG_BASE" --build-arg "MLFLOW_VERSION=$MLFLOW_VERSION" \
    --volume "$pipdir/home:/root:ro" \
    --tag "$IMG_MLFLOW" --file "$HACK/mlflow.Dockerfile" "$HACK"
  check_no_build_settings "$IMG_MLFLOW" "$pipdir/home/.config/pip/pip.conf"
  export_image "$IMG_MLFLOW" "$1"
}

# Fail if the image's config or history mentions the build's pip settings, or if a layer holds
# the mounted files.
check_no_build_settings() {  # image pip.conf
  local meta needles=(/root/.config/pip "PIP_INDEX" "index-url" "index_url") v
  meta=$(bah inspect --type image "$1")
  while IFS= read -r v; do
    v="${v#*= }"
    [[ "$v" == *://* ]] && needles+=("$v")
  done < <(grep -E '^[a-z-]+ = ' "$2" || true)
  for v in "${needles[@]}"; do
    if grep -qiF -- "$v" <<<"$meta"; then die "$1: the image config or history mentions '$v'"; fi
  done
  local ctr mnt
  ctr=$(bah from --quiet --pull-never "$1")
  mnt=$(bah mount "$ctr")
  if [[ -e "$mnt/etc/pip.conf" || -e "$mnt/root/.config/pip" || -e "$mnt/run/edgemodel-build" ]]; then
    bah umount "$ctr" >/dev/null; bah rm "$ctr" >/dev/null
    die "$1: a layer holds the build's pip.conf or CA bundle"
  fi
  bah umount "$ctr" >/dev/null; bah rm "$ctr" >/dev/null
  log "  checked: no pip index settings or CA bundle of the build in $1"
}

build_pause() {  # archive
  log "pause image $IMG_PAUSE: static Go pause program in a scratch image"
  mkdir -p "$WORK/pause"
  printf '%s' "$PAUSE_GO" > "$WORK/pause/main.go"
  printf 'module edgemodel.dev/hack/pause\n\ngo 1.22\n' > "$WORK/pause/go.mod"
  (cd "$WORK/pause" && CGO_ENABLED=0 GOFLAGS=-trimpath GOCACHE="$CACHE/go/build" go build -ldflags "-s -w" -o pause .)
  scratch_image "$IMG_PAUSE" "$WORK/pause/pause" /pause "$1" --entrypoint '["/pause"]' --user 65535:65535
}

scratch_image() {  # image binary path-in-image archive config-args...
  local image="$1" bin="$2" path="$3" out="$4"; shift 4
  local ctr
  ctr=$(bah from --quiet scratch)
  bah copy --quiet --chmod 0755 "$ctr" "$bin" "$path" >/dev/null
  bah config "$@" "$ctr"
  bah commit --quiet --rm "$ctr" "$image" >/dev/null
  export_image "$image" "$out"
}

build_coredns() {  # archive
  log "coredns image $IMG_COREDNS"
  scratch_image "$IMG_COREDNS" "$(node_bin)/coredns" /coredns "$1" --entrypoint '["/coredns"]' \
    --user 65532:65532 --port 53/udp --port 53/tcp
}

build_metrics_server() {  # archive
  log "metrics-server image $IMG_METRICS"
  scratch_image "$IMG_METRICS" "$(node_bin)/metrics-server" /metrics-server "$1" \
    --entrypoint '["/metrics-server"]' --user 65534:65534
}

# ---------------------------------------------------------------------------- the list

# short-name image key-function builder
IMAGES=(
  "base $IMG_BASE key_base build_base"
  "edgemodel $IMG_PROJECT key_project build_project"
  "mosquitto $IMG_BROKER key_broker build_broker"
  "pause $IMG_PAUSE key_pause build_pause"
  "coredns $IMG_COREDNS coredns build_coredns"
  "metrics-server $IMG_METRICS metrics-server build_metrics_server"
  "mlflow $IMG_MLFLOW key_mlflow build_mlflow"
)

key_of() {  # key-function
  case "$1" in
    coredns|metrics-server) key_binary "$1" ;;
    *) "$1" ;;
  esac
}

human() { numfmt --to=iec --suffix=B "$1"; }

cmd_build() {
  mkdir -p "$OUT" "$WORK" "$STORE"
  command -v buildah >/dev/null && command -v mmdebstrap >/dev/null ||
    die "buildah and mmdebstrap are missing: run hack/node-tools.sh (it installs them)"
  local entry short image keyf builder key out i=0 t0
  for entry in "${IMAGES[@]}"; do
    read -r short image keyf builder <<<"$entry"
    i=$((i + 1))
    if [[ "$keyf" == coredns || "$keyf" == metrics-server ]] && [[ ! -x "$(node_bin)/$keyf" ]]; then
      log "$i/${#IMAGES[@]} $image: SKIPPED, $(node_bin)/$keyf is missing (run hack/node-tools.sh)"
      continue
    fi
    key=$(key_of "$keyf")
    out=$(archive "$short" "$key")
    if [[ -f "$out" ]]; then
      log "$i/${#IMAGES[@]} $image: cached"
    else
      t0=$SECONDS
      log "$i/${#IMAGES[@]} $image: building"
      [[ "$short" == edgemodel || "$short" == mlflow ]] && ensure_loaded "$IMG_BASE" "$(archive base "$(key_base)")"
      "$builder" "$out"
      log "  $image: built in $((SECONDS - t0)) s"
      # Keep only the newest archive of each image, and drop the images it replaced from
      # buildah's storage (vfs keeps a full copy of every layer).
      find "$OUT" -maxdepth 1 -name "$short-*.tar" ! -path "$out" -delete
      bah rmi --prune >/dev/null 2>&1 || true
    fi
    printf '%s %s %s\n' "$image" "$out" "$(human "$(stat -c %s "$out")")"
  done
}

cmd_print() {
  local entry short image keyf builder
  for entry in "${IMAGES[@]}"; do
    read -r short image keyf builder <<<"$entry"
    printf '%s %s\n' "$image" "$(archive "$short" "$(key_of "$keyf")")"
  done
}

cmd_names() {
  printf 'BASE=%s\nEDGEMODEL=%s\nBROKER=%s\nPAUSE=%s\nCOREDNS=%s\nMETRICS_SERVER=%s\nMLFLOW=%s\n' \
    "$IMG_BASE" "$IMG_PROJECT" "$IMG_BROKER" "$IMG_PAUSE" "$IMG_COREDNS" "$IMG_METRICS" "$IMG_MLFLOW"
}

cmd_import() {
  local address="" ctr=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --address) address="$2"; shift 2 ;;
      --ctr) ctr="$2"; shift 2 ;;
      *) die "import: unknown argument $1" ;;
    esac
  done
  [[ -n "$address" ]] || die "import needs --address <containerd socket>"
  [[ -n "$ctr" ]] || ctr="$(node_bin)/ctr"
  local image out size t0
  cmd_build > "$WORK/built.txt"
  while read -r image out size; do
    [[ "$image" == "$IMG_BASE" ]] && continue   # only a build input
    t0=$SECONDS
    "$ctr" --address "$address" --namespace k8s.io images import "$out" >/dev/null 2>"$WORK/import.err" ||
      { cat "$WORK/import.err" >&2; die "ctr import of $out failed"; }
    log "imported $image ($size) in $((SECONDS - t0)) s"
  done < "$WORK/built.txt"
}

case "${1:-build}" in
  build) cmd_build ;;
  --print) cmd_print ;;
  names) cmd_names ;;
  import) shift; cmd_import "$@" ;;
  *) echo "usage: $0 [build|--print|names|import --address SOCKET [--ctr PATH]]" >&2; exit 2 ;;
esac
