# syntax=docker/dockerfile:1
# One image for every EdgeModel program: the operator (the default command), and the
# runtime and trainer the operator starts as `command: ["edgemodel-runtime"]` and
# `command: ["edgemodel-trainer"]`.
#
#   docker build -t edgemodel:dev .
#   docker run --rm edgemodel:dev edgemodel-trainer --help
#
# The `runtime` target is the edge runtime alone (issue 13, docs/runtime.md "Footprint"): the
# same wheel without its dependencies, plus only the `runtime` extra's (no MLflow, kubernetes
# or kopf client, no pandas); only `edgemodel-runtime` works in it:
#
#   docker build --target runtime -t edgemodel-runtime:dev .
#
# The builder stage builds the project's wheel and installs it with its runtime
# dependencies (not the dev extra) into a virtualenv; the final stage copies only that
# virtualenv onto the same slim base, so it has no compilers, no pip cache, no sources.
# Checked by tests/unit/test_dockerfile.py (hadolint and the project's own rules).
#
# BASE_IMAGE is the base of both stages: the official slim Python image by default; the e2e
# node builds a Debian bookworm base with python3 (3.11) instead (hack/images.sh), since no
# registry is reachable there. Any base with `python3` and its venv module works.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm

FROM ${BASE_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python3 -m venv /opt/edgemodel

# Only what the wheel is built from; .dockerignore keeps the rest out of the context.
COPY pyproject.toml README.md ./
COPY edgemodel ./edgemodel
COPY operator ./operator
COPY runtime ./runtime
COPY trainer ./trainer
COPY simulator ./simulator
COPY backtest ./backtest

RUN /opt/edgemodel/bin/pip wheel --no-deps --wheel-dir /dist . \
    && /opt/edgemodel/bin/pip install /dist/edgemodel-*.whl \
    && /opt/edgemodel/bin/edgemodel-operator --help >/dev/null \
    && /opt/edgemodel/bin/edgemodel-runtime --help >/dev/null \
    && /opt/edgemodel/bin/edgemodel-trainer --help >/dev/null


# The runtime alone: the wheel with --no-deps, then the requirements of its `runtime` extra.
FROM ${BASE_IMAGE} AS runtime-builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

COPY --from=builder /dist /dist
RUN python3 -m venv /opt/edgemodel \
    && /opt/edgemodel/bin/pip install --no-deps /dist/edgemodel-*.whl \
    && /opt/edgemodel/bin/python -c "import importlib.metadata as m; print('\n'.join(r.split(';')[0] for r in m.requires('edgemodel') if 'extra == \"runtime\"' in r))" > /tmp/runtime-requirements.txt \
    && /opt/edgemodel/bin/pip install -r /tmp/runtime-requirements.txt \
    && /opt/edgemodel/bin/edgemodel-runtime --help >/dev/null


FROM ${BASE_IMAGE} AS runtime

LABEL org.opencontainers.image.title="edgemodel-runtime" \
      org.opencontainers.image.description="EdgeModel edge inference runtime (slim)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/edgemodel/edgemodel"

ENV PATH="/opt/edgemodel/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

RUN groupadd --system --gid 10001 edgemodel \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin edgemodel

COPY --from=runtime-builder /opt/edgemodel /opt/edgemodel

WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
CMD ["edgemodel-runtime"]

FROM ${BASE_IMAGE}

ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="edgemodel" \
      org.opencontainers.image.description="EdgeModel operator, edge inference runtime and trainer" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/edgemodel/edgemodel" \
      org.opencontainers.image.url="https://github.com/edgemodel/edgemodel" \
      org.opencontainers.image.vendor="EdgeModel" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# HOME is /tmp: the Pods mount an emptyDir there and keep the root file system read-only.
ENV PATH="/opt/edgemodel/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    GIT_PYTHON_REFRESH=quiet

RUN groupadd --system --gid 10001 edgemodel \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin edgemodel

COPY --from=builder /opt/edgemodel /opt/edgemodel

WORKDIR /tmp
USER 10001:10001

# 8000 operator metrics, 8081 operator /healthz, 8080 runtime HTTP (/metrics, /healthz, /readyz).
EXPOSE 8000 8081 8080

CMD ["edgemodel-operator"]
