"""Issue 12, item 6: no password in any process's argv, with the real mosquitto_passwd and Mosquitto.

The managed broker's init container script, as the operator renders it, runs under
``strace -f -e execve``, which records the argv of every process it starts. It runs with
busybox's ``sh`` (the eclipse-mosquitto image is Alpine, whose ``sh`` is busybox) and with
the system's ``sh``. The file path is moved to a temporary directory. The password file it
writes is then the real broker's: the credentials connect, and a wrong password does not.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import uuid

import pytest
from paho.mqtt import client as mqtt

from edgemodel_dev.harness import mosquitto, processes
from edgemodel_operator.render import broker
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings
from tests import specs

pytestmark = pytest.mark.mqtt

USERNAME = "edgemodel"
PASSWORD = "Pw-" + uuid.uuid4().hex  # unique, so any occurrence in a trace is this one
DEVICE_USERNAME = "device"
DEVICE_PASSWORD = "Dev-" + uuid.uuid4().hex
SHELLS = [
    pytest.param(["busybox", "sh"], id="busybox-sh"),
    pytest.param(["sh"], id="system-sh"),
]


def _init_script() -> str:
    """The init container's ``sh -c`` script, from the rendered broker Deployment."""
    em = EdgeModel.from_body(
        {"metadata": {"name": "em", "namespace": "ns", "uid": "u"}, "spec": specs.VALID_SPEC}
    )
    objs = broker.objects(em, Settings(), generated_password=PASSWORD)
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    [init] = deployment["spec"]["template"]["spec"]["initContainers"]
    command = init["command"]
    assert command[:2] == ["sh", "-c"]
    env = {e["name"] for e in init["env"]}
    assert env == {"MQTT_USERNAME", "MQTT_PASSWORD", "MQTT_DEVICE_USERNAME", "MQTT_DEVICE_PASSWORD"}
    assert all("value" not in e for e in init["env"]), "credentials come from the Secret, not the spec"
    # Its root file system is read-only: mosquitto_passwd -U needs a writable /tmp (tmpfile()),
    # as the strace of its file calls shows; the auth emptyDir is where the file goes.
    mounts = {m["mountPath"] for m in init["volumeMounts"]}
    assert mounts == {"/mosquitto/auth", "/tmp", broker.CONFIG_DIR}
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    return str(command[2])


def _moved(script: str, tmp_path: pathlib.Path) -> tuple[str, pathlib.Path]:
    """The script with its files in ``tmp_path``; the password file's path."""
    config = tmp_path / "config"
    config.mkdir()
    for key in (broker.RUNTIME_ACL_KEY, broker.DEVICE_ACL_KEY):
        (config / key).write_text("topic read plant/+/telemetry\n")
    passwd = tmp_path / "passwd"
    script = script.replace(broker.AUTH_FILE, str(passwd)).replace(broker.ACL_FILE, str(tmp_path / "acl"))
    return script.replace(broker.CONFIG_DIR, str(config)), passwd


def _run_traced(
    shell: list[str], script: str, trace: pathlib.Path, **env: str
) -> subprocess.CompletedProcess[str]:
    strace = shutil.which("strace")
    if strace is None or shutil.which(shell[0]) is None:
        pytest.skip(f"needs strace and {shell[0]}")
    return subprocess.run(
        [strace, "-f", "-qq", "-s", "65535", "-e", "trace=execve", "-o", str(trace), *shell, "-c", script],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _connects(port: int, username: str, password: str) -> bool:
    result: dict[str, object] = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(username, password)
    client.on_connect = lambda c, u, flags, rc, props: result.setdefault("rc", rc)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        processes.wait_until(lambda: "rc" in result, timeout=10, what="a CONNACK")
    finally:
        client.disconnect()
        client.loop_stop()
    rc = result["rc"]
    return not getattr(rc, "is_failure", True)


@pytest.mark.parametrize("shell", SHELLS)
def test_the_init_container_keeps_the_password_out_of_every_argv_and_the_broker_accepts_it(
    shell: list[str], tmp_path: pathlib.Path
):
    script, passwd = _moved(_init_script(), tmp_path)
    trace = tmp_path / "execve.trace"
    done = _run_traced(
        shell,
        script,
        trace,
        MQTT_USERNAME=USERNAME,
        MQTT_PASSWORD=PASSWORD,
        MQTT_DEVICE_USERNAME=DEVICE_USERNAME,
        MQTT_DEVICE_PASSWORD=DEVICE_PASSWORD,
    )
    assert done.returncode == 0, done.stderr

    calls = [line for line in trace.read_text().splitlines() if "execve(" in line]
    # It did exec mosquitto_passwd, so the trace saw the processes the script starts.
    assert any("mosquitto_passwd" in line and '"-U"' in line for line in calls), calls
    argvs = [line.split("execve(", 1)[1].split("], ", 1)[0] for line in calls]
    assert not [a for a in argvs if PASSWORD in a or DEVICE_PASSWORD in a], "a password in an argv"
    # The file holds the PBKDF2-SHA512 hashes, never a password, and only its owner reads it.
    content = passwd.read_text()
    assert content.startswith(f"{USERNAME}:$7$") and f"\n{DEVICE_USERNAME}:$7$" in content
    assert PASSWORD not in content and DEVICE_PASSWORD not in content
    assert passwd.stat().st_mode & 0o777 == 0o600

    # The real broker, with that very file as its password file.
    broker_ = mosquitto.Mosquitto(tmp_path / "broker", username="someone-else", password="unused").start()
    try:
        shutil.copyfile(passwd, broker_.workdir / "passwd")
        broker_.restart()
        assert _connects(broker_.port, USERNAME, PASSWORD)
        assert _connects(broker_.port, DEVICE_USERNAME, DEVICE_PASSWORD)
        assert not _connects(broker_.port, USERNAME, PASSWORD + "x")
        assert not _connects(broker_.port, DEVICE_USERNAME, PASSWORD)
        assert not _connects(broker_.port, "someone-else", "unused")
    finally:
        broker_.stop()


@pytest.mark.parametrize(
    ("username", "password"),
    [("edge:admin", "pw"), ("edgemodel", "pw\nadmin:pw"), ("", "pw")],
    ids=["colon-in-username", "line-break-adds-a-user", "empty-username"],
)
def test_credentials_that_would_forge_a_password_file_line_are_refused(
    username, password, tmp_path: pathlib.Path
):
    script, passwd = _moved(_init_script(), tmp_path)
    done = _run_traced(["sh"], script, tmp_path / "trace", MQTT_USERNAME=username, MQTT_PASSWORD=password)
    assert done.returncode != 0
    assert not passwd.exists()


@pytest.mark.parametrize(
    ("device", "password"),
    [("dev:admin", "pw"), ("device", "pw\nadmin:pw"), (USERNAME, "pw"), ("device", "")],
    ids=["colon-in-username", "line-break-adds-a-user", "same-as-the-runtime", "empty-password"],
)
def test_devices_credentials_that_would_forge_a_line_or_merge_the_users_are_refused(
    device, password, tmp_path: pathlib.Path
):
    script, passwd = _moved(_init_script(), tmp_path)
    done = _run_traced(
        ["sh"],
        script,
        tmp_path / "trace",
        MQTT_USERNAME=USERNAME,
        MQTT_PASSWORD=PASSWORD,
        MQTT_DEVICE_USERNAME=device,
        MQTT_DEVICE_PASSWORD=password,
    )
    assert done.returncode != 0
    assert not passwd.exists()
