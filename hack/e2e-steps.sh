#!/usr/bin/env bash
# The end-to-end steps a user takes, on any cluster that can run the project's image:
#
#   mlflow     kubectl apply examples/mlflow.yaml, wait for the tracking server
#   install    helm install the chart with the given image
#   edgemodel  kubectl apply examples/edgemodel.yaml, wait for the broker and inference
#   simulator  start examples/simulator.yaml, without drift for now
#   heal       wait until a first model serves, then restart the simulator with an abrupt
#              drift, and wait: Drifted -> Retraining -> Ready with a newer model
#   all        the five above, in order
#
# hack/kind-e2e.sh runs them on a kind cluster; tests/e2e runs the very same script on the
# harness's real node (devtools/edgemodel_dev/harness/node.py). The only difference is how
# the cluster and the images come to exist.
#
# Usage: hack/e2e-steps.sh STEP [STEP...]
#
# Environment (all optional):
#   KUBECONFIG, KUBE_CONTEXT   which cluster (kubectl's own defaults otherwise)
#   KUBECTL, HELM              the binaries                               (kubectl, helm)
#   IMAGE                      the project's image, repository:tag        (edgemodel:dev)
#   IMAGE_PULL_POLICY          for the operator and the Pods it starts    (IfNotPresent)
#   BROKER_IMAGE               the managed Mosquitto image                (the chart's default)
#   MLFLOW_IMAGE               MLflow's image instead of examples/mlflow.yaml's own
#   NAMESPACE                  namespace of the operator release          (edgemodel-system)
#   TIMEOUT                    seconds for the heal after the simulator starts (1200)
#   HELM_EXTRA_ARGS            more `helm install` arguments, split on spaces
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBECTL="${KUBECTL:-kubectl}"
HELM="${HELM:-helm}"
IMAGE="${IMAGE:-edgemodel:dev}"
IMAGE_PULL_POLICY="${IMAGE_PULL_POLICY:-IfNotPresent}"
NAMESPACE="${NAMESPACE:-edgemodel-system}"
TIMEOUT="${TIMEOUT:-1200}"
EM_NAME="line1-temperature"
EM_NAMESPACE="default"
FIRST_VERSION=""

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
k() { "${KUBECTL}" ${KUBE_CONTEXT:+--context "${KUBE_CONTEXT}"} "$@"; }
h() { "${HELM}" ${KUBE_CONTEXT:+--kube-context "${KUBE_CONTEXT}"} "$@"; }

dump() {
  log "Diagnostics"
  k get nodes -o wide || true
  k get edgemodels -A -o wide || true
  k get edgemodel "${EM_NAME}" -n "${EM_NAMESPACE}" -o yaml || true
  k get pods,jobs,deployments,hpa -A -o wide || true
  k get events -A --sort-by=.lastTimestamp | tail -n 60 || true
  k logs -n "${NAMESPACE}" deployment/edgemodel --tail=200 || true
  k logs -n "${EM_NAMESPACE}" pod/edgemodel-simulator --tail=50 || true
  k logs -n "${EM_NAMESPACE}" -l app.kubernetes.io/component=trainer --tail=100 --prefix || true
  k logs -n "${EM_NAMESPACE}" -l app.kubernetes.io/component=inference --tail=50 --prefix || true
}

# The EdgeModel's fields as "ready drifted retraining version", e.g. "True False False 3".
em_state() {
  k get edgemodel "${EM_NAME}" -n "${EM_NAMESPACE}" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Drifted")].status} {.status.conditions[?(@.type=="Retraining")].status} {.status.model.version}' 2>/dev/null || true
}

# wait_for DESCRIPTION DEADLINE COMMAND...: poll COMMAND every 2 s until it succeeds.
wait_for() {
  local what="$1" deadline="$2"
  shift 2
  until "$@"; do
    if (( SECONDS > deadline )); then
      log "Timed out waiting for ${what}; state: $(em_state)"
      return 1
    fi
    sleep 2
  done
  log "Saw ${what}: $(em_state)"
}

step_mlflow() {
  log "Installing MLflow (examples/mlflow.yaml${MLFLOW_IMAGE:+, image ${MLFLOW_IMAGE}})"
  if [[ -n "${MLFLOW_IMAGE:-}" ]]; then
    sed -e "s|image: ghcr.io/mlflow/mlflow:.*|image: ${MLFLOW_IMAGE}|" "${ROOT}/examples/mlflow.yaml" | k apply -f -
  else
    k apply -f "${ROOT}/examples/mlflow.yaml"
  fi
  k -n mlflow rollout status deployment/mlflow --timeout=300s
}

step_install() {
  log "Installing the chart with ${IMAGE}"
  local extra=()
  [[ -n "${BROKER_IMAGE:-}" ]] && extra+=(--set "brokerImage=${BROKER_IMAGE}")
  # shellcheck disable=SC2206 # split on purpose
  [[ -n "${HELM_EXTRA_ARGS:-}" ]] && extra+=(${HELM_EXTRA_ARGS})
  h upgrade --install edgemodel "${ROOT}/helm/edgemodel" \
    --namespace "${NAMESPACE}" --create-namespace \
    --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
    --set image.pullPolicy="${IMAGE_PULL_POLICY}" \
    --set mlflow.trackingUri=http://mlflow.mlflow.svc:5000 \
    "${extra[@]}" --wait --timeout 300s
  k -n "${NAMESPACE}" rollout status deployment/edgemodel --timeout=180s
}

step_edgemodel() {
  log "Applying examples/edgemodel.yaml"
  k apply -f "${ROOT}/examples/edgemodel.yaml"
  local deadline=$(( SECONDS + 300 ))
  wait_for "the managed broker" "${deadline}" \
    k -n "${EM_NAMESPACE}" rollout status "deployment/${EM_NAME}-broker" --timeout=5s
  wait_for "the inference StatefulSet" "${deadline}" \
    k -n "${EM_NAMESPACE}" get "statefulset/${EM_NAME}-inference"
}

# examples/simulator.yaml with this run's image: edgemodel-simulator runs in the cluster next
# to the managed broker, with the broker credentials the operator generated. $1 is the drift:
# "none", or "now" for an abrupt shift of the plant's temperature from its first reading on.
start_simulator() {
  local drift=(-e "s|--drift=abrupt|--drift=none|")
  [[ "$1" == now ]] && drift=(-e "s|--drift-at=120|--drift-at=0|")
  k -n "${EM_NAMESPACE}" delete pod edgemodel-simulator --ignore-not-found --wait=true
  sed -e "s|image: edgemodel:dev|image: ${IMAGE}|" \
      -e "s|imagePullPolicy: IfNotPresent|imagePullPolicy: ${IMAGE_PULL_POLICY}|" \
      "${drift[@]}" \
    "${ROOT}/examples/simulator.yaml" | k -n "${EM_NAMESPACE}" apply -f -
}

step_simulator() {
  # Without drift: the first model is trained on the plant as it was. The drift comes only
  # once that model serves (step_heal), however long the first training took.
  log "Starting the simulator (no drift until a first model serves)"
  start_simulator none
}

ready_with_model() { local r _d _t v; read -r r _d _t v <<<"$(em_state)"; [[ "${r}" == True && -n "${v}" ]]; }

# Drifted, or already a newer version (the retrain may finish between polls). Not Retraining
# alone: the bootstrap Job of the first version sets it too.
drifted_or_newer() {
  local _r d _t v
  read -r _r d _t v <<<"$(em_state)"
  [[ "${d}" == True ]] || [[ -n "${v}" && "${v}" != "${FIRST_VERSION}" ]]
}

recovered() {
  local r _d t v
  read -r r _d t v <<<"$(em_state)"
  [[ "${r}" == True && "${t}" != True && -n "${v}" && "${v}" -gt "${FIRST_VERSION}" ]]
}

step_heal() {
  local deadline=$(( SECONDS + TIMEOUT )) new_version
  wait_for "a first model serving (Ready=True)" "${deadline}" ready_with_model
  read -r _ _ _ FIRST_VERSION <<<"$(em_state)"
  log "Model version ${FIRST_VERSION} serves; restarting the simulator with an abrupt drift"
  start_simulator now
  wait_for "Drifted=True" "${deadline}" drifted_or_newer
  wait_for "Ready=True with a new model version" "${deadline}" recovered
  read -r _ _ _ new_version <<<"$(em_state)"
  log "PASS: ${EM_NAME} drifted, retrained and serves version ${new_version} (was ${FIRST_VERSION})"
  k get edgemodel "${EM_NAME}" -n "${EM_NAMESPACE}" -o wide
}

on_exit() {
  local rc=$?
  [[ ${rc} -ne 0 ]] && dump
  exit "${rc}"
}

[[ $# -gt 0 ]] || { sed -n '2,25p' "${BASH_SOURCE[0]}" >&2; exit 2; }
steps=("$@")
[[ "${steps[*]}" == all ]] && steps=(mlflow install edgemodel simulator heal)
trap on_exit EXIT
for step in "${steps[@]}"; do
  case "${step}" in
    mlflow|install|edgemodel|simulator|heal) "step_${step}" ;;
    *) log "unknown step: ${step}"; exit 2 ;;
  esac
done
