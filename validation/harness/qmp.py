"""A small QMP client over a unix socket: commands, their replies, and the events that arrive meanwhile."""

from __future__ import annotations

import json
import socket
import time


class QMPError(RuntimeError):
    pass


class QMP:
    """One connection to QEMU's monitor. Events are kept in `events` in arrival order."""

    def __init__(self, path: str, timeout: float = 30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise QMPError(f"QMP socket {path} did not open within {timeout:.0f} s") from None
                time.sleep(0.05)
        self.sock.settimeout(timeout)
        self._buf = b""
        self.events: list[dict] = []
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError(f"unexpected QMP greeting {greeting!r}")
        self.version = greeting["QMP"]["version"]
        self.command("qmp_capabilities")

    def _read(self) -> dict:
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QMPError("QEMU closed the QMP socket")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def command(self, name: str, **arguments) -> object:
        msg = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise QMPError(f"{name}: {reply['error'].get('desc', reply['error'])}")
            return reply.get("return")

    def wait_event(self, accept, timeout: float) -> dict | None:
        """The first event (already received or arriving within `timeout`) for which accept(event) is true."""
        for ev in self.events:
            if accept(ev):
                self.events.remove(ev)
                return ev
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                msg = self._read()
            except TimeoutError:
                return None
            if "event" in msg:
                if accept(msg):
                    return msg
                self.events.append(msg)
        return None

    def close(self) -> None:
        self.sock.close()
