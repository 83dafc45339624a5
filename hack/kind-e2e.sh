#!/usr/bin/env bash
# End-to-end on a real kind cluster: the self-healing loop with the real image.
#
#   1. create a kind cluster             4. helm install the chart (image loaded into kind)
#   2. docker build, kind load the image 5. kubectl apply examples/edgemodel.yaml
#   3. apply examples/mlflow.yaml        6. run the simulator with abrupt drift and watch
#                                           the EdgeModel go Drifted -> Retraining -> Ready
#                                           with a new model version
#
# Needs docker, kind, kubectl and helm on PATH. Exits non-zero, after printing what the
# cluster looked like, if any step or the loop does not finish within its timeout.
#
# Environment (all optional):
#   CLUSTER_NAME      kind cluster name                       (edgemodel-e2e)
#   IMAGE             image to build and load                 (edgemodel:e2e)
#   KIND_NODE_IMAGE   kindest/node image, pinned by CI        (kind's default)
#   NAMESPACE         namespace of the operator release       (edgemodel-system)
#   DRIFT_AT          seconds of stationary data before the abrupt shift  (120)
#   TIMEOUT           seconds for the whole loop after the simulator starts (1200)
#   KEEP_CLUSTER=1    leave the cluster for inspection
#   REUSE_CLUSTER=1   use an existing cluster of that name instead of creating one
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_NAME="${CLUSTER_NAME:-edgemodel-e2e}"
IMAGE="${IMAGE:-edgemodel:e2e}"
NAMESPACE="${NAMESPACE:-edgemodel-system}"
DRIFT_AT="${DRIFT_AT:-120}"
TIMEOUT="${TIMEOUT:-1200}"
EM_NAME="line1-temperature"
EM_NAMESPACE="default"
CONTEXT="kind-${CLUSTER_NAME}"

log() { printf '[kind-e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
k() { kubectl --context "${CONTEXT}" "$@"; }

dump() {
  log "Diagnostics"
  k get nodes -o wide || true
  k get edgemodels -A -o wide || true
  k get edgemodel "${EM_NAME}" -n "${EM_NAMESPACE}" -o yaml || true
  k get pods,jobs,deployments -A -o wide || true
  k get events -A --sort-by=.lastTimestamp | tail -n 60 || true
  k logs -n "${NAMESPACE}" deployment/edgemodel --tail=200 || true
  k logs -n "${EM_NAMESPACE}" pod/edgemodel-simulator --tail=50 || true
  k logs -n "${EM_NAMESPACE}" -l app.kubernetes.io/component=trainer --tail=100 --prefix || true
  k logs -n "${EM_NAMESPACE}" -l app.kubernetes.io/component=inference --tail=50 --prefix || true
}

WATCH_PID=""
cleanup() {
  local rc=$?
  [[ -n "${WATCH_PID}" ]] && kill "${WATCH_PID}" 2>/dev/null || true
  if [[ ${rc} -ne 0 ]]; then
    dump
  fi
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

# The EdgeModel's fields as "ready drifted retraining version", e.g. "True False False 3".
em_state() {
  k get edgemodel "${EM_NAME}" -n "${EM_NAMESPACE}" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Drifted")].status} {.status.conditions[?(@.type=="Retraining")].status} {.status.model.version}' 2>/dev/null || true
}

# wait_for DESCRIPTION DEADLINE COMMAND...: poll COMMAND every 5 s until it succeeds.
wait_for() {
  local what="$1" deadline="$2"
  shift 2
  until "$@"; do
    if (( SECONDS > deadline )); then
      log "Timed out waiting for ${what}; state: $(em_state)"
      return 1
    fi
    sleep 5
  done
  log "Saw ${what}: $(em_state)"
}

# --- 1. cluster -----------------------------------------------------------------------
if [[ "${REUSE_CLUSTER:-0}" == 1 ]] && kind get clusters | grep -qx "${CLUSTER_NAME}"; then
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

# --- 3. MLflow --------------------------------------------------------------------------
log "Installing MLflow"
k apply -f "${ROOT}/examples/mlflow.yaml"
k -n mlflow rollout status deployment/mlflow --timeout=300s

# --- 4. the chart -----------------------------------------------------------------------
log "Installing the chart"
helm --kube-context "${CONTEXT}" upgrade --install edgemodel "${ROOT}/helm/edgemodel" \
  --namespace "${NAMESPACE}" --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --set image.pullPolicy=IfNotPresent \
  --set mlflow.trackingUri=http://mlflow.mlflow.svc:5000 \
  --wait --timeout 180s
k -n "${NAMESPACE}" rollout status deployment/edgemodel --timeout=120s

# --- 5. the EdgeModel -------------------------------------------------------------------
log "Applying examples/edgemodel.yaml"
k apply -f "${ROOT}/examples/edgemodel.yaml"
deadline=$(( SECONDS + 180 ))
wait_for "the managed broker" "${deadline}" \
  k -n "${EM_NAMESPACE}" rollout status "deployment/${EM_NAME}-broker" --timeout=5s
wait_for "the inference Deployment" "${deadline}" \
  k -n "${EM_NAMESPACE}" get "deployment/${EM_NAME}-inference"

# --- 6. the simulator, and the loop -----------------------------------------------------
# examples/simulator.yaml with this run's image and drift time: edgemodel-simulator runs in
# the cluster next to the managed broker, with the broker credentials the operator
# generated, and shifts the plant's temperature by a step --drift-at simulated seconds in.
log "Starting the simulator (abrupt drift at ${DRIFT_AT}s)"
k -n "${EM_NAMESPACE}" delete pod edgemodel-simulator --ignore-not-found --wait=true
sed -e "s|image: edgemodel:dev|image: ${IMAGE}|" -e "s|--drift-at=120|--drift-at=${DRIFT_AT}|" \
  "${ROOT}/examples/simulator.yaml" | k -n "${EM_NAMESPACE}" apply -f -

# For the log: the EdgeModel's columns as they change.
k get edgemodels -n "${EM_NAMESPACE}" -w -o wide &
WATCH_PID=$!

deadline=$(( SECONDS + TIMEOUT ))
ready_with_model() { read -r ready _ _ version <<<"$(em_state)"; [[ "${ready}" == True && -n "${version}" ]]; }
wait_for "a first model serving (Ready=True)" "${deadline}" ready_with_model
read -r _ _ _ first_version <<<"$(em_state)"
log "Model version ${first_version} serves; waiting for the drift"

drifted() { read -r _ drifted _ _ <<<"$(em_state)"; [[ "${drifted}" == True ]]; }
wait_for "Drifted=True" "${deadline}" drifted

# Retraining may finish between two polls; a newer version counts as having retrained.
retraining_or_newer() {
  local ready drifted retraining version
  read -r ready drifted retraining version <<<"$(em_state)"
  [[ "${retraining}" == True ]] || [[ -n "${version}" && "${version}" != "${first_version}" ]]
}
wait_for "Retraining=True" "${deadline}" retraining_or_newer

recovered() {
  local ready drifted retraining version
  read -r ready drifted retraining version <<<"$(em_state)"
  [[ "${ready}" == True && "${retraining}" != True && -n "${version}" && "${version}" -gt "${first_version}" ]]
}
wait_for "Ready=True with a new model version" "${deadline}" recovered

read -r _ _ _ new_version <<<"$(em_state)"
log "PASS: ${EM_NAME} drifted, retrained and serves version ${new_version} (was ${first_version})"
k get edgemodel "${EM_NAME}" -n "${EM_NAMESPACE}" -o wide
