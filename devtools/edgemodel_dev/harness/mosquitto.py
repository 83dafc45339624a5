"""A real Mosquitto broker on 127.0.0.1 with password authentication and persistence.

Persistence is on, so a restart (:meth:`Mosquitto.restart`) keeps persistent sessions
and queued QoS 1 messages, as a managed broker in the cluster does. With ``tls=True`` it
also listens with TLS on :attr:`Mosquitto.tls_port`, with a server certificate for
127.0.0.1 from a throwaway CA (:attr:`Mosquitto.ca_file`); both listeners share the
credentials and the messages.

I/O: runs the ``mosquitto`` binary from the Debian package.
"""

from __future__ import annotations

import getpass
import pathlib
import shutil
import socket
import subprocess

from edgemodel_dev.harness import pki, processes

__all__ = ["Mosquitto"]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Mosquitto:
    """A broker; ``username``/``password`` are the only credentials it accepts."""

    def __init__(
        self,
        workdir: pathlib.Path,
        *,
        username: str = "edge",
        password: str = "edge-secret",  # noqa: S107 - a throwaway test broker
        tls: bool = False,
    ) -> None:
        self.workdir = workdir.resolve()
        self.username = username
        self.password = password
        self.host = "127.0.0.1"
        self.port = processes.free_port()
        self.tls_port: int | None = processes.free_port() if tls else None
        self.ca_file: pathlib.Path | None = None
        self._process: processes.ManagedProcess | None = None
        self._config_given = False

    def _write_config(self) -> pathlib.Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        passwd = self.workdir / "passwd"
        passwd.unlink(missing_ok=True)
        mosquitto_passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        # As the operator's broker does: the plain file first, hashed in place, so the
        # password is never in a process's argv.
        passwd.write_text(f"{self.username}:{self.password}\n")
        passwd.chmod(0o600)
        subprocess.run([mosquitto_passwd, "-U", str(passwd)], check=True, capture_output=True)
        passwd.chmod(0o600)
        (self.workdir / "data").mkdir(exist_ok=True)
        tls_lines: list[str] = []
        if self.tls_port is not None:
            authority = pki.Pki(self.workdir / "pki")
            cert, key = authority.issue("broker", common_name="mosquitto", server_ips=(self.host,))
            self.ca_file = authority.ca_cert
            tls_lines = [
                f"listener {self.tls_port} {self.host}",
                f"cafile {authority.ca_cert}",
                f"certfile {cert}",
                f"keyfile {key}",
            ]
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    f"listener {self.port} {self.host}",
                    *tls_lines,
                    "allow_anonymous false",
                    # Stay the user who started it: no privilege drop that loses access to workdir.
                    f"user {getpass.getuser()}",
                    f"password_file {passwd}",
                    "persistence true",
                    f"persistence_location {self.workdir / 'data'}/",
                    "autosave_interval 1",
                    "max_queued_messages 1000000",
                    "max_inflight_messages 100",
                    "log_dest stdout",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "",
                ]
            )
        )
        return conf

    def start_with(self, config: str) -> Mosquitto:
        """Start with ``config`` as the whole ``mosquitto.conf`` (e.g. the operator's, its paths
        and listener moved by the caller to :attr:`workdir` and ``127.0.0.1:``:attr:`port`)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "mosquitto.conf").write_text(config)
        self._config_given = True
        return self.start()

    def start(self) -> Mosquitto:
        given = self._process is not None or self._config_given
        conf = self.workdir / "mosquitto.conf" if given else self._write_config()
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self._process = processes.ManagedProcess(
            "mosquitto", [binary, "-c", str(conf)], log_path=self.workdir / "mosquitto.log"
        ).start()
        ports = [self.port] if self.tls_port is None else [self.port, self.tls_port]
        self._process.wait_ready(lambda: all(_port_open(p) for p in ports), timeout=15)
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()

    def restart(self) -> None:
        """Stop cleanly (the broker saves its state) and start again on the same port."""
        self.stop()
        processes.wait_until(lambda: not _port_open(self.port), timeout=10, what="broker to close")
        self.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running
