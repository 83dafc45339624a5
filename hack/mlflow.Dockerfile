# The MLflow tracking server of examples/mlflow.yaml, built locally for the harness's real
# node (no registry is reachable there): the same MLflow release the example pins, from
# PyPI, on the Debian base hack/images.sh makes. Users of the example pull the official
# image instead; hack/e2e-steps.sh swaps the image name when MLFLOW_IMAGE is set.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE}

ARG MLFLOW_VERSION
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python3 -m venv /opt/mlflow \
    && /opt/mlflow/bin/pip install "mlflow==${MLFLOW_VERSION}" \
    && /opt/mlflow/bin/mlflow --version \
    && groupadd --system --gid 10001 mlflow \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin mlflow

ENV PATH="/opt/mlflow/bin:${PATH}" HOME=/tmp
WORKDIR /tmp
USER 10001:10001
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
