"""Steer a running campaign from another terminal: a token-protected ZeroMQ socket, JSON only.

``sdl run`` serves its :class:`~sdl.campaign.control.CampaignControl` on a REP socket bound to
127.0.0.1 (a random port) and writes the address and a fresh token to
``DATA_DIR/NAME.control.json``, readable by its owner only. ``sdl control`` reads that
file and sends one request. Requests are untrusted network input: JSON, never pickle, and
anything malformed or without the token is refused with a reason while the campaign
carries on.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import zmq

from sdl.campaign.control import CampaignControl

logger = logging.getLogger(__name__)

#: Requests a client may make, and the fields each one takes besides ``token`` and ``who``.
ACTIONS = {
    "status": (),
    "pause": ("reason",),
    "resume": ("reason",),
    "abort": ("reason",),
    "veto": ("reason",),
    "inject": ("conditions", "reason"),
}


def connection_file(data_dir: Path | str, campaign: str) -> Path:
    """Where a running campaign leaves its control address and token."""
    return Path(data_dir) / f"{campaign}.control.json"


class ControlServer:
    """Answers control requests for one campaign on a background thread.

    Parameters
    ----------
    control
        The campaign's control.
    status
        Returns what ``status`` reports (experiments done, budget, state).
    address
        ZeroMQ address to bind; loopback with a random port by default.
    """

    def __init__(
        self,
        control: CampaignControl,
        status: Callable[[], dict[str, Any]],
        address: str = "tcp://127.0.0.1:*",
    ) -> None:
        self.control = control
        self.status = status
        self.token = secrets.token_urlsafe(24)
        self._context: zmq.Context = zmq.Context.instance()
        self._socket = self._context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(address)
        self.address = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sdl-control", daemon=True)

    def start(self, connection_path: Path) -> ControlServer:
        """Start answering and write ``connection_path`` (owner-only) for clients."""
        fd = os.open(connection_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump({"address": self.address, "token": self.token}, file)
        self._connection_path = connection_path
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()
        self._connection_path.unlink(missing_ok=True)

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            reply = self.handle(self._socket.recv())
            self._socket.send(json.dumps(reply).encode())

    def handle(self, message: bytes) -> dict[str, Any]:
        """The reply to one raw request; never raises on bad input."""
        try:
            request = json.loads(message.decode("utf-8"))
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
        except (UnicodeDecodeError, ValueError) as error:
            logger.error("control: refused a malformed request: %s", error)
            return {"ok": False, "error": f"malformed request: {error}"}
        if not hmac.compare_digest(str(request.get("token", "")), self.token):
            logger.error("control: refused a request without the right token")
            return {"ok": False, "error": "refused: missing or wrong token"}
        action, who = request.get("action"), str(request.get("who") or "anonymous")
        if action not in ACTIONS:
            return {"ok": False, "error": f"unknown action {action!r}; valid: {sorted(ACTIONS)}"}
        try:
            self._act(action, who, request)
        except (TypeError, ValueError) as error:
            return {"ok": False, "error": f"{action}: {error}"}
        return {"ok": True, **self.status()}

    def _act(self, action: str, who: str, request: Mapping[str, Any]) -> None:
        reason = str(request.get("reason") or "")
        if action == "inject":
            conditions = request.get("conditions")
            if not isinstance(conditions, dict) or not conditions:
                raise ValueError("conditions must be a mapping of condition name to number")
            self.control.inject({str(k): float(v) for k, v in conditions.items()}, who, reason)
        elif action == "veto":
            self.control.veto_next(who, reason)
        elif action != "status":
            getattr(self.control, action)(who, reason)


def send_request(path: Path, action: str, timeout_s: float = 10.0, **fields: Any) -> dict[str, Any]:
    """Send one request to the campaign whose connection file is ``path``; its reply."""
    try:
        connection = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no running campaign: {path} does not exist") from None
    socket: zmq.Socket = zmq.Context.instance().socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
    try:
        socket.connect(connection["address"])
        socket.send(json.dumps({"token": connection["token"], "action": action, **fields}).encode())
        try:
            return json.loads(socket.recv())
        except zmq.Again:
            raise TimeoutError(
                f"the campaign at {connection['address']} did not answer within {timeout_s:g} s"
            ) from None
    finally:
        socket.close()
