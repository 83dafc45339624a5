"""The runtime with paho as it is: the benchmark's A/B variant without the private hooks.

``python -m bench.runtime_plain <edgemodel-runtime arguments>`` runs the real runtime CLI
with :class:`edgemodel_runtime.mqtt.BufferedClient` replaced by :class:`PlainClient`, a
paho client that overrides only the public ``loop_read`` (to hold reads while the queue is
full, so back pressure stays lossless and the two variants do the same work). Everything
else is paho 2.2's own: one ``recv`` per packet read, one ``send`` per packet written, one
wake-up byte per packet queued from another thread.

It exists only to measure, in the same run, what the hooks on paho's private
``_sock_recv``/``_sock_send``/``_thread_main`` buy (``python -m bench runtime``). The
runtime itself never imports it.

I/O: the runtime's (MQTT, HTTP, MLflow).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from edgemodel_runtime import main as runtime_main
from edgemodel_runtime import mqtt

__all__ = ["PlainClient", "main"]


class PlainClient(paho.Client):
    """paho's client with only the runtime's back-pressure hold on the public ``loop_read``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold_reads: Callable[[float], bool] | None = None

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        if self.hold_reads is not None and self.hold_reads(0.005):
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super().loop_read(max_packets)


def main(argv: list[str] | None = None) -> int:
    mqtt.BufferedClient = PlainClient  # type: ignore[misc,assignment]
    return runtime_main.main(argv)


if __name__ == "__main__":
    sys.exit(main())
