#!/usr/bin/env bash
# End-to-end on a real kind cluster: the self-healing loop with the real image.
#
#   1. create a kind cluster             4. helm install the chart (image loaded into kind)
#   2. docker build, kind load the image 5. kubectl apply examples/edgemodel.yaml
#   3. apply examples/mlflow.yaml        6. run the simulator with abrupt drift and watch
#                                           the EdgeModel go Drifted -> Retraining -> Ready
#                                           with a new model version
#
# Steps 3-6 are hack/e2e-steps.sh, the very steps tests/e2e runs on the harness's real node.
# Needs docker, kind, kubectl and helm on PATH. Exits non-zero, after printing what the
# cluster looked like, if any step or the loop does not finish within its timeout.
#
# Environment (all optional):
#   CLUSTER_NAME      kind cluster name                       (edgemodel-e2e)
#   IMAGE             image to build and load                 (edgemodel:e2e)
#   KIND_NODE_IMAGE   kindest/node image, pinned by CI        (kind's default)
#   NAMESPACE         namespace of the operator release       (edgemodel-system)
#   TIMEOUT           seconds for the whole loop after the simulator starts (1200)
#   KEEP_CLUSTER=1    leave the cluster for inspection
#   REUSE_CLUSTER=1   use an existing cluster of that name instead of creating one
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_NAME="${CLUSTER_NAME:-edgemodel-e2e}"
IMAGE="${IMAGE:-edgemodel:e2e}"
NAMESPACE="${NAMESPACE:-edgemodel-system}"
TIMEOUT="${TIMEOUT:-1200}"
CONTEXT="kind-${CLUSTER_NAME}"

log() { printf '[kind-e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cleanup() {
  local rc=$?
  if [[ "${KEEP_CLUSTER:-0}" != 1 && "${REUSE_CLUSTER:-0}" != 1 ]]; then
    log "Deleting cluster ${CLUSTER_NAME}"
    kind delete cluster --name "${CLUSTER_NAME}" >/dev/null 2>&1 || true
  fi
  exit "${rc}"
}
trap cleanup EXIT

for tool in docker kind kubectl helm; do
  command -v "${tool}" >/dev/null || { log "${tool} is not on PATH"; exit 2; }
done

# --- 1. cluster -----------------------------------------------------------------------
if [[ "${REUSE_CLUSTER:-0}" == 1 ]] && kind get clusters | grep -x "${CLUSTER_NAME}" >/dev/null; then
  log "Reusing cluster ${CLUSTER_NAME}"
else
  log "Creating cluster ${CLUSTER_NAME}"
  kind create cluster --name "${CLUSTER_NAME}" --wait 120s ${KIND_NODE_IMAGE:+--image "${KIND_NODE_IMAGE}"}
fi

# --- 2. image ---------------------------------------------------------------------------
log "Building ${IMAGE}"
docker build -t "${IMAGE}" \
  --build-arg REVISION="$(git -C "${ROOT}" rev-parse HEAD 2>/dev/null || echo unknown)" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  "${ROOT}"
kind load docker-image "${IMAGE}" --name "${CLUSTER_NAME}"

# --- 3.-6. the steps every cluster shares -----------------------------------------------
# hack/e2e-steps.sh is also what tests/e2e runs on the harness's real node: MLflow, the
# chart, the EdgeModel, the simulator, and the wait for the heal.
KUBE_CONTEXT="${CONTEXT}" IMAGE="${IMAGE}" IMAGE_PULL_POLICY=IfNotPresent NAMESPACE="${NAMESPACE}" \
  TIMEOUT="${TIMEOUT}" \
  bash "${ROOT}/hack/e2e-steps.sh" mlflow install edgemodel simulator heal
