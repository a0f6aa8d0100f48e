"""The control room: every campaign of a catalog on one page, each viewable live or finished.

``sdl dashboard`` serves, on 127.0.0.1 behind one token, a list of the campaigns a catalog
holds (the SQLite catalog of a data directory, or the facility's tiled server on
PostgreSQL) and, for each, the campaign page of :mod:`sdl.views.dashboard` drawn from the
catalog. The page outlives the campaign: a finished one stays viewable, and a campaign
running in another process (``sdl run``, ``sdl agent-service``) is followed as its runs
reach the catalog and steered through its control socket (:mod:`sdl.loop.control_server`),
so every request is recorded by the campaign itself, as from ``sdl control``.
"""

from __future__ import annotations

import asyncio
import html
import logging
import secrets
import threading
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sdl.campaign.systems import get_system
from sdl.loop.control_server import connection_file, send_request
from sdl.records.vocabulary import (
    CAMPAIGN_ID,
    PURPOSE,
    Purpose,
)
from sdl.views.campaign_log import CatalogLog
from sdl.views.dashboard import Dashboard, ServedApp, plotly_js

logger = logging.getLogger(__name__)

#: Seconds between two reads of the catalog for a campaign that is still running.
REFRESH_S = 2.0

#: Seconds between two reads of the catalog for a campaign that does not answer here: it
#: ended, or it runs on another host.
IDLE_REFRESH_S = 30.0

#: The one file of a campaign's page served without the token: plotly.js, public code.
PUBLIC_FILE = "static/plotly.min.js"

#: How long a campaign's control socket has to answer a status request.
STATUS_TIMEOUT_S = 2.0


def campaign_configs(client: Any) -> dict[str, dict[str, Any]]:
    """Each campaign in the catalog and its latest configuration, by name."""
    from tiled.queries import Key

    configs: dict[str, tuple[float, dict[str, Any]]] = {}
    for run in client.search(Key(f"start.{PURPOSE}") == Purpose.CAMPAIGN).values():
        start = run.metadata["start"]
        name, started = start[CAMPAIGN_ID], float(start["time"])
        if name not in configs or started > configs[name][0]:
            configs[name] = (started, start.get("config", {}))
    return {name: config for name, (_, config) in sorted(configs.items())}


class RemoteControl:
    """The :class:`~sdl.campaign.control.CampaignControl` surface of a campaign running in
    another process, over its control socket; a refused request raises ``ValueError`` with
    the campaign's reason."""

    def __init__(self, connection_path: Path) -> None:
        self.connection_path = connection_path

    def status(self) -> dict[str, Any] | None:
        """The running campaign's status, or None if it does not answer (it is not running)."""
        if not self.connection_path.exists():
            return None
        try:
            reply = send_request(self.connection_path, "status", timeout_s=STATUS_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError):
            return None
        return reply if reply.get("ok") else None

    def _send(self, action: str, **fields: Any) -> None:
        try:
            reply = send_request(self.connection_path, action, **fields)
        except (FileNotFoundError, TimeoutError) as error:
            raise ValueError(f"the campaign is not running: {error}") from None
        if not reply.get("ok"):
            raise ValueError(reply.get("error", "refused"))

    def pause(self, who: str, reason: str = "") -> None:
        self._send("pause", who=who, reason=reason)

    def resume(self, who: str, reason: str = "") -> None:
        self._send("resume", who=who, reason=reason)

    def abort(self, who: str, reason: str = "") -> None:
        self._send("abort", who=who, reason=reason)

    def veto_next(self, who: str, reason: str = "") -> None:
        self._send("veto", who=who, reason=reason)

    def inject(self, conditions: Mapping[str, float], who: str, reason: str = "") -> None:
        self._send("inject", who=who, reason=reason, conditions=dict(conditions))

    def approve(
        self,
        proposal_id: str,
        who: str,
        reason: str = "",
        conditions: Mapping[str, float] | None = None,
    ) -> None:
        extra = {"conditions": dict(conditions)} if conditions else {}
        self._send("approve", who=who, reason=reason, proposal_id=proposal_id, **extra)

    def reject(self, proposal_id: str, who: str, reason: str = "") -> None:
        self._send("reject", who=who, reason=reason, proposal_id=proposal_id)


class CampaignView:
    """One campaign's page in the control room: its log from the catalog, its live status
    and control through its socket while it runs, its records alone once it has ended."""

    def __init__(
        self, client: Any, data_dir: Path, name: str, config: Mapping[str, Any], token: str
    ) -> None:
        self.catalog = CatalogLog(client, name)
        self.remote = RemoteControl(connection_file(data_dir, name))
        self.catalog.refresh()
        self.dashboard = Dashboard(
            self.catalog.log,
            self.remote,  # type: ignore[arg-type]  # the same surface, over the socket
            self.status,
            config.get("search_space", {}),
            phases=_phases(config),
            token=token,
        )
        self._drawn: str | None = None
        self._draw_latest()
        self._live = self.remote.status()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name=f"follow-{name}", daemon=True)
        self._thread.start()

    def status(self) -> dict[str, Any]:
        """The campaign's own status while it runs (as last asked: never blocks); after, what
        its records say."""
        live = self._live
        if live is not None:
            return {**{k: v for k, v in live.items() if k != "ok"}, "controllable": True}
        summary = self.catalog.log.summary()
        done, budget = summary["experiments"], summary["budget"]
        return {
            "campaign": self.catalog.log.campaign_id,
            "state": "finished" if budget and done >= budget else "stopped",
            "experiments": done,
            "budget": budget,
            "run_engine": "not running",
            "awaiting_approval": [],
            "controllable": False,
        }

    def _follow(self) -> None:
        """Ask the campaign for its status every few seconds, and read what is new in the
        catalog: at once while it answers and once after, and every ``IDLE_REFRESH_S`` when
        it does not (it ended, or it runs on another host and has no control file here)."""
        last_read, was_live = time.monotonic(), self._live is not None
        while not self._stop.wait(REFRESH_S):
            self._live = self.remote.status()
            idle = time.monotonic() - last_read < IDLE_REFRESH_S
            if self._live is None and not was_live and idle:
                continue
            last_read, was_live = time.monotonic(), self._live is not None
            try:
                self.catalog.refresh()
                self._draw_latest()
            except Exception:  # a catalog hiccup must not end the page
                logger.exception("control room: could not read campaign %s", self.name)

    @property
    def name(self) -> str:
        return self.catalog.log.campaign_id

    def _draw_latest(self) -> None:
        latest = self.catalog.latest_measurements() if self.catalog.latest_measured else None
        if latest is not None and latest[0] != self._drawn:
            self._drawn = latest[0]
            self.dashboard.measurement_figures.submit(*latest)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.dashboard.measurement_figures.stop()


class ControlRoom:
    """Serves the list of a catalog's campaigns and a page for each, on ``host:port``.

    Parameters
    ----------
    client
        The catalog (a tiled client).
    data_dir
        Where running campaigns leave their control files (their ``data_dir``).
    description
        Names the catalog on the page (a data directory or a tiled address).
    """

    def __init__(
        self,
        client: Any,
        data_dir: Path | str,
        description: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
    ) -> None:
        self.client = client
        self.data_dir = Path(data_dir)
        self.description = description
        self.host = host
        self.port = port
        self.token = token or secrets.token_urlsafe(24)
        self._views: dict[str, CampaignView] = {}
        self._lock = threading.Lock()
        self._pages = Starlette(
            routes=[Route("/", self._index), Route("/api/campaigns", self._campaigns)]
        )
        self._served: ServedApp | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/?token={self.token}"

    def start(self) -> str:
        """Start serving on a background thread; the page's address, token included."""
        self._served = ServedApp(self.app, self.host, self.port)
        self.port = self._served.start()
        return self.url

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop()
        for view in self._views.values():
            view.stop()

    def campaigns(self) -> list[dict[str, Any]]:
        """One row per campaign: its state, progress and best, newest configuration first."""
        rows = []
        for name, config in campaign_configs(self.client).items():
            view = self.view(name, config)
            status, summary = view.status(), view.catalog.log.summary()
            best = summary["best"]
            last = max((e.started_at for e in view.catalog.log.experiments), default=None)
            rows.append(
                {
                    "campaign": name,
                    "state": status["state"],
                    "experiments": status.get("experiments", summary["experiments"]),
                    "budget": summary["budget"],
                    "objective": summary["objective"],
                    "best": None if best is None else best["value"],
                    "last_experiment_at": last,
                    "page": f"campaign/{urllib.parse.quote(name)}/",
                }
            )
        return rows

    def view(self, name: str, config: Mapping[str, Any] | None = None) -> CampaignView:
        """The campaign's view, made on first use (``KeyError`` for a campaign not in the
        catalog)."""
        with self._lock:
            if name not in self._views:
                if config is None:
                    config = campaign_configs(self.client)[name]
                self._views[name] = CampaignView(
                    self.client, self.data_dir, name, config, self.token
                )
            return self._views[name]

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI app: ``/campaign/NAME/...`` is that campaign's dashboard, the rest the list."""
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/campaign/"):
            await self._pages(scope, receive, send)
            return
        name, slash, rest = path[len("/campaign/") :].partition("/")
        if rest == PUBLIC_FILE:  # like the dashboard's, public code: no token, no lookup
            await Response(plotly_js(), media_type="application/javascript")(scope, receive, send)
            return
        refusal = self._refusal(Request(scope))
        if refusal is None and not slash:  # relative links need the trailing slash
            query = scope.get("query_string", b"").decode()
            refusal = RedirectResponse(f"{path}/?{query}")
        if refusal is None:
            try:
                view = await asyncio.to_thread(self.view, name)
            except KeyError:
                refusal = JSONResponse({"error": f"no campaign {name!r} here"}, status_code=404)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        child = {**scope, "path": f"/{rest}", "raw_path": f"/{rest}".encode()}
        await view.dashboard.app()(child, receive, send)

    def _refusal(self, request: Request) -> Response | None:
        return Dashboard.refusal(request, self.token)

    async def _index(self, request: Request) -> Response:
        return self._refusal(request) or HTMLResponse(await asyncio.to_thread(self._index_page))

    async def _campaigns(self, request: Request) -> Response:
        return self._refusal(request) or JSONResponse(await asyncio.to_thread(self.campaigns))

    def _index_page(self) -> str:
        rows = []
        for row in self.campaigns():
            when = row["last_experiment_at"]
            best = "" if row["best"] is None else f"{row['objective']} = {row['best']:.4g}"
            link = f"{row['page']}?token={urllib.parse.quote(self.token)}"
            rows.append(
                "<tr>"
                f'<td><a href="{html.escape(link)}">{html.escape(row["campaign"])}</a></td>'
                f"<td>{html.escape(row['state'])}</td>"
                f"<td>{row['experiments']} / {row['budget']}</td>"
                f"<td>{html.escape(best)}</td>"
                f"<td>{_utc(when)}</td>"
                "</tr>"
            )
        body = "".join(rows) or '<tr><td colspan="5">no campaign in this catalog yet</td></tr>'
        return _INDEX.format(catalog=html.escape(self.description), rows=body)


def _phases(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The phases of a campaign's materials system; none if it is a plug-in not installed
    here (its page still shows everything but the phase labels)."""
    system = (config.get("devices") or {}).get("system", "tio2_solgel")
    try:
        return tuple(get_system(system).phases)
    except ValueError as error:
        logger.warning("control room: %s", error)
        return ()


def _utc(timestamp: float | None) -> str:
    return (
        "" if timestamp is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
    )


_INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sdl control room</title>
<meta http-equiv="refresh" content="10">
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; }}
</style></head>
<body><h1>Campaigns in {catalog}</h1>
<table><thead><tr><th>campaign</th><th>state</th><th>experiments done / budget</th>
<th>best so far</th><th>last experiment started</th></tr></thead>
<tbody>{rows}</tbody></table>
<p>This page reloads every 10 s. A running campaign's page follows it and steers it.</p>
</body></html>
"""
