"""Steer a running campaign from another terminal: a token-protected ZeroMQ socket, JSON only.

``sdl run`` serves its :class:`~sdl.campaign.control.CampaignControl` on a REP socket bound to
127.0.0.1 (a random port) and writes the address and a fresh token to
``DATA_DIR/NAME.control.json``, readable by its owner only. ``sdl control`` reads that
file and sends one request. Requests are untrusted network input: a request is two frames,
the token and then a JSON object (never pickle). The token is checked first, then the size,
then the JSON and its fields; anything else is refused with a reason while the campaign
carries on, and no request, however malformed, stops the server.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
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
    "approve": ("proposal_id", "conditions", "reason"),
    "reject": ("proposal_id", "reason"),
}


#: The largest request body answered; larger ones are refused with a reason.
MAX_REQUEST_BYTES = 64 * 1024
#: Beyond this, ZeroMQ drops the message and the sender's connection before it is read.
MAX_MESSAGE_BYTES = 1024 * 1024


class RequestRefused(ValueError):
    """A control request that is not carried out; the message says why."""


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
    record
        Makes the requests taken so far durable (in the catalog); called before a request
        is answered, so that what a person was told was taken survives a crash.
    address
        ZeroMQ address to bind; loopback with a random port by default.
    """

    def __init__(
        self,
        control: CampaignControl,
        status: Callable[[], dict[str, Any]],
        record: Callable[[], None] = lambda: None,
        address: str = "tcp://127.0.0.1:*",
    ) -> None:
        self.control = control
        self.status = status
        self.record = record
        self.token = secrets.token_urlsafe(24)
        self._context: zmq.Context = zmq.Context.instance()
        self._socket = self._context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self._socket.bind(address)
        self.address = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sdl-control", daemon=True)

    def start(self, connection_path: Path) -> ControlServer:
        """Start answering and write ``connection_path`` (owner-only) for clients."""
        write_private_json(connection_path, {"address": self.address, "token": self.token})
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
            frames = self._socket.recv_multipart()
            try:
                reply = self.handle(frames)
            except Exception as error:  # the campaign's control must outlive any request
                logger.exception("control: a request could not be answered")
                reply = {"ok": False, "error": f"internal error: {type(error).__name__}"}
            self._socket.send(json.dumps(reply).encode())

    def handle(self, frames: Sequence[bytes]) -> dict[str, Any]:
        """The reply to one raw request (its frames); never raises on bad input."""
        try:
            request = self._authenticated_request(frames)
        except RequestRefused as refusal:
            logger.error("control: refused a request: %s", refusal)
            return {"ok": False, "error": f"refused: {refusal}"}
        action, who = request.get("action"), str(request.get("who") or "anonymous")
        if action not in ACTIONS:
            return {"ok": False, "error": f"unknown action {action!r}; valid: {sorted(ACTIONS)}"}
        try:
            self._act(action, who, request)
        except (TypeError, ValueError) as error:
            return {"ok": False, "error": f"{action}: {error}"}
        if action != "status":
            self.record()
        return {"ok": True, **self.status()}

    def _authenticated_request(self, frames: Sequence[bytes]) -> dict[str, Any]:
        """The request's JSON object, once its token, size and shape have passed."""
        if len(frames) != 2:
            raise RequestRefused(
                f"a request is two frames (the token, then a JSON object), got {len(frames)}"
            )
        token, body = frames
        if not hmac.compare_digest(token, self.token.encode()):
            raise RequestRefused("missing or wrong token")
        if len(body) > MAX_REQUEST_BYTES:
            raise RequestRefused(f"a request is at most {MAX_REQUEST_BYTES} bytes, got {len(body)}")
        try:
            request = json.loads(body.decode("utf-8"))
        except RecursionError:
            raise RequestRefused("malformed request: nested too deeply") from None
        except (UnicodeDecodeError, ValueError) as error:
            raise RequestRefused(f"malformed request: {error}") from None
        if not isinstance(request, dict):
            raise RequestRefused("malformed request: a request is a JSON object")
        for name, value in request.items():
            allowed = dict if name == "conditions" else str | None
            if not isinstance(value, allowed):
                raise RequestRefused(
                    f"malformed request: field {name!r} must be "
                    f"{'an object' if name == 'conditions' else 'a string'}"
                )
        return request

    def _act(self, action: str, who: str, request: Mapping[str, Any]) -> None:
        reason = str(request.get("reason") or "")
        given = request.get("conditions")
        needed = action == "inject" or (action == "approve" and given is not None)
        conditions = condition_numbers(given) if needed else None
        if action == "inject":
            self.control.inject(conditions or {}, who, reason)
        elif action in ("approve", "reject"):
            proposal_id = str(request.get("proposal_id") or "")
            if not proposal_id:
                raise ValueError("proposal_id names the waiting proposal (see status)")
            if action == "approve":
                self.control.approve(proposal_id, who, reason, conditions)
            else:
                self.control.reject(proposal_id, who, reason)
        elif action == "veto":
            self.control.veto_next(who, reason)
        elif action != "status":
            getattr(self.control, action)(who, reason)


def condition_numbers(conditions: Any) -> dict[str, float]:
    """A request's conditions: a non-empty mapping of name to number, or a ``ValueError``."""
    if not isinstance(conditions, dict) or not conditions:
        raise ValueError("conditions must be a mapping of condition name to number")
    numbers = {
        str(name): float(value)
        for name, value in conditions.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    if len(numbers) != len(conditions):
        bad = sorted(set(map(str, conditions)) - set(numbers))
        raise ValueError(f"conditions {bad} must be numbers")
    return numbers


def write_private_json(path: Path, content: Mapping[str, Any]) -> None:
    """Write ``content`` to ``path`` readable by its owner only, never through a symlink.

    The file is made new (mode 0600) beside ``path`` and renamed over it: a file or a
    symlink already at ``path`` is replaced, not written through, and a reader never sees
    half a file.
    """
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(content, file, indent=2)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
        socket.send_multipart(
            [connection["token"].encode(), json.dumps({"action": action, **fields}).encode()]
        )
        try:
            return json.loads(socket.recv())
        except zmq.Again:
            raise TimeoutError(
                f"the campaign at {connection['address']} did not answer within {timeout_s:g} s"
            ) from None
    finally:
        socket.close()
