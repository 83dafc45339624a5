"""The paho internals :class:`edgemodel_runtime.mqtt.BufferedClient` hooks are still there.

The buffered client overrides paho-mqtt 2.2's socket I/O and loop thread. If an upgrade
renames them, buffering would silently stop (or the loop would break): fail here instead.
No I/O: only the client object is built, never connected.
"""

from __future__ import annotations

import inspect

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edgemodel_runtime import mqtt


def test_the_hooked_paho_methods_exist_with_the_signatures_we_override():
    for name, params in {
        "_sock_recv": ["self", "bufsize"],
        "_sock_send": ["self", "buf"],
        "loop_read": ["self", "max_packets"],
        "loop_write": ["self"],
        "want_write": ["self"],
        "loop_start": ["self"],
        "_thread_main": ["self"],
    }.items():
        method = getattr(paho.Client, name, None)
        assert callable(method), f"paho.Client.{name} is gone"
        assert list(inspect.signature(method).parameters) == params, name


def test_the_hooked_paho_attributes_exist_on_a_client():
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="probe")
    for name in ("_sock", "_thread", "_thread_terminate", "_sockpairR", "_sockpairW", "_out_messages",
                 "_client_id"):  # fmt: skip
        assert hasattr(client, name), f"paho.Client has no {name}"
    buffered = mqtt.BufferedClient(callback_api_version=CallbackAPIVersion.VERSION2, client_id="probe")
    assert not buffered.want_write()
