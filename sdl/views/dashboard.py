"""Watch and steer a running campaign from a browser: a token-protected page on 127.0.0.1.

The page (``sdl/views/templates/dashboard.html``, drawn by plotly.js served from the installed
plotly package, so no network is needed) receives updates as server-sent events from
``/api/events``; its buttons POST to ``/api/control/ACTION``, which calls the campaign's
:class:`~sdl.campaign.control.CampaignControl`, so every request is recorded in the catalog with who
and when. Every endpoint but the static plotly.js needs the token printed at start-up
(``?token=`` or ``Authorization: Bearer``): none gets 401, a wrong one 403.

The page's data comes from a :class:`~sdl.views.campaign_log.DocumentFeed`, a plain Bluesky
document callback. In the embedded mode (:meth:`Dashboard.for_runner`) it is fed in-process
by the campaign's RunEngine and catalog writer; in a distributed deployment the agent
service (``sdl agent-service --dashboard``) feeds it the document stream as well.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import json
import logging
import math
import queue
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

import plotly.offline
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from sdl.analysis.pipeline import Measurements
from sdl.analysis.xrd.calibration import InstrumentCalibration
from sdl.analysis.xrd.user_phases import XRDPhases
from sdl.campaign.control import CampaignControl
from sdl.campaign.systems import get_system
from sdl.views.campaign_log import CampaignLog, DocumentFeed, campaign_log_from_catalog
from sdl.views.figures import conditions_figure, convergence_figure, measurement_figures

logger = logging.getLogger(__name__)

#: Seconds between checks for news on an open event stream.
POLL_INTERVAL_S = 0.3

#: Rows of each table (faults, requests, refused proposals) sent to the page, newest last.
TABLE_ROWS = 50

#: Control actions the page may request, and the :class:`CampaignControl` method of each.
CONTROL_METHODS = {
    "pause": "pause",
    "resume": "resume",
    "abort": "abort",
    "veto": "veto_next",
    "inject": "inject",
    "approve": "approve",
    "reject": "reject",
}


@cache
def plotly_js() -> str:
    """plotly.js from the installed plotly package (the pages need no network)."""
    return plotly.offline.get_plotlyjs()


def _page() -> str:
    return (
        importlib.resources.files("sdl.views")
        .joinpath("templates/dashboard.html")
        .read_text(encoding="utf-8")
    )


def _finite(value: Any) -> Any:
    """JSON has no NaN: NaN and infinities become None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


class MeasurementFigures:
    """The latest sample's pattern and micrograph figures, drawn off the campaign's thread.

    Fitting the pattern and segmenting the micrograph take a fraction of a second; a worker
    thread does it for the newest measurement only, so a slow browser never slows the lab.
    """

    def __init__(
        self,
        phases: Sequence[str] | XRDPhases,
        calibration: InstrumentCalibration | None = None,
    ) -> None:
        self.phases = phases
        self.calibration = calibration
        self.figures: dict[str, str] = {}
        self.version = 0
        self._pending: queue.Queue[tuple[str, Measurements] | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._work, name="dashboard-figures", daemon=True)
        self._thread.start()

    def submit(self, raw_uid: str, measurements: Measurements) -> None:
        """Draw this measurement next, replacing one still waiting."""
        with self._pending.mutex:
            self._pending.queue.clear()
        self._pending.put((raw_uid, measurements))

    def stop(self) -> None:
        with self._pending.mutex:
            self._pending.queue.clear()
        self._pending.put(None)
        self._thread.join(timeout=10)

    def _work(self) -> None:
        while (item := self._pending.get()) is not None:
            raw_uid, measurements = item
            try:
                figures = measurement_figures(
                    measurements,
                    self.phases,
                    f"latest sample (run {raw_uid[:8]})",
                    self.calibration,
                )
            except ValueError as error:
                logger.warning("dashboard: cannot draw run %s: %s", raw_uid, error)
                continue
            self.figures = {**self.figures, **{k: f.to_json() for k, f in figures.items()}}
            self.version += 1


class ServedApp:
    """An ASGI app served by uvicorn from a background thread, on ``host:port`` (0: a free
    port)."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        self.host = host
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                lifespan="off",
                interface="asgi3",  # a bound method is not recognised as one
                timeout_graceful_shutdown=1,
            )
        )
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    def start(self, timeout_s: float = 60.0) -> int:
        """Start serving; the port, once it is open."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"could not listen on {self.host}")
            time.sleep(0.02)
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class Dashboard:
    """Serves one campaign's page on ``host:port`` from a background thread.

    Parameters
    ----------
    log
        The campaign's records, kept up to date by :attr:`feed` (subscribe it to the
        campaign's documents).
    control
        Where the page's requests go.
    status
        Returns the campaign's live state (``state``, ``run_engine``, ``paused_by`` ...).
    search_space
        The campaign's searched conditions (``low``, ``high``, ``unit``), for the parallel
        coordinates and the inject form.
    host, port
        Where to listen; loopback and a free port by default.
    token
        The secret every request must carry; a fresh one by default.
    record
        Makes the control requests taken so far durable; called before one is answered.
    """

    def __init__(
        self,
        log: CampaignLog,
        control: CampaignControl,
        status: Callable[[], dict[str, Any]],
        search_space: Mapping[str, Mapping[str, Any]],
        *,
        phases: tuple[str, ...],
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        record: Callable[[], None] = lambda: None,
    ) -> None:
        self.log = log
        self.control = control
        self.status = status
        self.record = record
        self.search_space = {name: dict(p) for name, p in search_space.items()}
        self.host = host
        self.token = token or secrets.token_urlsafe(24)
        self.measurement_figures = MeasurementFigures(
            log.fitted_phases(phases), log.xrd_calibration
        )
        self.feed = DocumentFeed(log, on_measured=self.measurement_figures.submit)
        self._stopping = threading.Event()
        self._app: Starlette | None = None
        self._served: ServedApp | None = None
        self.port = port

    @classmethod
    def for_runner(
        cls, runner: Any, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None
    ) -> Dashboard:
        """A dashboard of a :class:`~sdl.loop.runner.CampaignRunner`, fed in-process.

        Call it before ``runner.run()``. Experiments already in the catalog (a resumed
        campaign) are read back first.
        """
        config = runner.config
        log = campaign_log_from_catalog(runner.client, config.name)
        log.config = config.model_dump(mode="json")
        log.xrd_instrument = runner.analysis.settings.get("xrd_instrument")
        log.xrd_phases = runner.analysis.settings.get("xrd_phases")

        def status() -> dict[str, Any]:
            return {
                **runner.status(),
                "run_engine": ", ".join(
                    f"{station.name}: {station.state}" for station in runner.stations
                ),
                "instrument_hours": runner.result.instrument_hours,
                "alerts": [alert.as_json() for alert in list(runner.alerts.recent)[-TABLE_ROWS:]],
            }

        dashboard = cls(
            log,
            runner.control,
            status,
            {n: p.model_dump(mode="json") for n, p in config.search_space.items()},
            phases=tuple(get_system(config.devices.system).phases),
            host=host,
            port=port,
            token=token,
            record=runner.record_control,
        )
        runner.subscribe(dashboard.feed)
        return dashboard

    @property
    def url(self) -> str:
        """The page's address, token included: what to open in a browser."""
        return f"http://{self.host}:{self.port}/?token={self.token}"

    def start(self) -> str:
        """Start serving; return :attr:`url` once the port is open."""
        self._served = ServedApp(self.app(), self.host, self.port)
        self.port = self._served.start()
        logger.info("dashboard on %s", self.url)
        return self.url

    def stop(self) -> None:
        """Close the event streams and stop serving."""
        self._stopping.set()
        if self._served is not None:
            self._served.stop()
        self.measurement_figures.stop()

    # ---------------------------------------------------------------- HTTP

    def app(self) -> Starlette:
        """The ASGI app (also usable with starlette's TestClient)."""
        if self._app is None:
            self._app = Starlette(
                routes=[
                    Route("/", self._page),
                    Route("/static/plotly.min.js", self._plotly),
                    Route("/api/state", self._state),
                    Route("/api/events", self._events),
                    Route("/api/control/{action}", self._control, methods=["POST"]),
                ]
            )
        return self._app

    def _refusal(self, request: Request) -> Response | None:
        return self.refusal(request, self.token)

    @staticmethod
    def refusal(request: Request, token: str) -> Response | None:
        """401 without a token, 403 with a wrong one, None when the token is right."""
        given = request.query_params.get("token")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        if not given:
            return JSONResponse(
                {
                    "error": "this dashboard needs its token (printed at start-up):"
                    " open the URL with ?token=..."
                },
                status_code=401,
            )
        if not hmac.compare_digest(given.encode(), token.encode()):
            logger.warning(
                "dashboard: refused a request with a wrong token from %s",
                request.client.host if request.client else "?",
            )
            return JSONResponse({"error": "wrong token"}, status_code=403)
        return None

    async def _page(self, request: Request) -> Response:
        return self._refusal(request) or HTMLResponse(_page())

    async def _plotly(self, request: Request) -> Response:
        return Response(
            plotly_js(),
            media_type="application/javascript",
            headers={"Cache-Control": "max-age=3600"},
        )

    async def _state(self, request: Request) -> Response:
        return self._refusal(request) or JSONResponse(self.snapshot(figures=True))

    def snapshot(self, *, figures: bool) -> dict[str, Any]:
        """What the page shows: status, progress, tables, and (optionally) every figure."""
        with self.log.lock:
            update: dict[str, Any] = {
                "status": self.status(),
                "summary": self.log.summary(),
                "search_space": self.search_space,
                "faults": self.log.faults[-TABLE_ROWS:],
                "controls": self.log.controls[-TABLE_ROWS:],
                "refused": self.log.refused[-TABLE_ROWS:],
            }
            if figures:
                update["figures"] = {
                    "convergence": json.loads(convergence_figure(self.log).to_json()),
                    "conditions": json.loads(
                        conditions_figure(self.log, self.search_space).to_json()
                    ),
                    **{k: json.loads(v) for k, v in self.measurement_figures.figures.items()},
                }
        return _finite(update)

    async def _events(self, request: Request) -> Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal

        async def updates() -> Any:
            seen: tuple[int, int] | None = None
            last_status = None
            while not self._stopping.is_set() and not await request.is_disconnected():
                versions = (self.log.version, self.measurement_figures.version)
                status = self.status()
                if versions != seen or status != last_status:
                    update = await asyncio.to_thread(self.snapshot, figures=versions != seen)
                    seen, last_status = versions, status
                    yield f"event: update\ndata: {json.dumps(update)}\n\n"
                await asyncio.sleep(POLL_INTERVAL_S)

        return StreamingResponse(
            updates(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def _control(self, request: Request) -> Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        action = request.path_params["action"]
        if action not in CONTROL_METHODS:
            return JSONResponse(
                {"error": f"unknown action {action!r}; one of {sorted(CONTROL_METHODS)}"},
                status_code=404,
            )
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the request body must be JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse(
                {"error": "the request body must be a JSON object"}, status_code=400
            )
        who = str(body.get("who") or "dashboard")[:80]
        reason = str(body.get("reason") or "")[:500]
        try:
            await asyncio.to_thread(self._request, action, body, who, reason)
        except ValueError as error:
            return JSONResponse({"error": str(error)}, status_code=422)
        await asyncio.to_thread(self.record)
        logger.info("dashboard: %s requested by %s", action, who)
        return JSONResponse({"ok": True, "action": action, "status": _finite(self.status())})

    def _request(self, action: str, body: Mapping[str, Any], who: str, reason: str) -> None:
        """Hand one request to the campaign's control; ``ValueError`` says why it is refused
        (an approval's edit is checked against the limits, which may ask the devices)."""
        method = getattr(self.control, CONTROL_METHODS[action])
        conditions = None
        if action == "inject" or (action == "approve" and body.get("conditions") is not None):
            conditions, problem = self._conditions(body.get("conditions"))
            if problem:
                raise ValueError(problem)
        if action == "inject":
            method(conditions, who, reason)
        elif action == "approve":
            method(str(body.get("proposal_id") or ""), who, reason, conditions)
        elif action == "reject":
            method(str(body.get("proposal_id") or ""), who, reason)
        else:
            method(who, reason)

    def _conditions(self, given: Any) -> tuple[dict[str, float], str | None]:
        """The injected conditions as numbers, or why they are refused.

        The campaign checks them against the search space and the device limits itself (a
        point outside is refused and recorded); here only their shape is checked.
        """
        if not isinstance(given, dict) or set(given) != set(self.search_space):
            return {}, f"conditions must give exactly {sorted(self.search_space)}"
        try:
            conditions = {name: float(value) for name, value in given.items()}
        except (TypeError, ValueError):
            return {}, "conditions must be numbers"
        if not all(math.isfinite(value) for value in conditions.values()):
            return {}, "conditions must be finite numbers"
        return conditions, None
