"""Alerts: an unattended campaign tells people what needs them, by log line, webhook or e-mail.

The notifiers are the campaign file's ``alerts`` (docs/alerts.md). Delivering never blocks or
stops the campaign: each notifier has its own bounded queue and thread (a slow one delays no
other), every delivery has a timeout, and a failed one is logged. An alert repeated within
``dedup_window_s`` is dropped, and each notifier sends at most ``max_per_hour``. Secrets are
read from the environment when an alert is sent, by the variable the campaign file names.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import email.utils
import json
import logging
import os
import queue
import smtplib
import ssl
import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx

from sdl.campaign.alerts import (
    AlertKind,
    AlertsConfig,
    EmailNotifier,
    LogNotifier,
    WebhookNotifier,
)
from sdl.campaign.control import ControlAction, WaitingProposal
from sdl.campaign.results import CampaignResult, Fault
from sdl.campaign.schema import CampaignConfigError

logger = logging.getLogger(__name__)

#: Alerts sent whatever the rate limit: one per run, and the one people wait for.
CAMPAIGN_ENDS = ("finished", "aborted")

#: Alerts a notifier holds while it delivers; beyond that they are dropped, and logged.
QUEUE_SIZE = 100

#: Alerts kept for the dashboard, newest last.
RECENT_ALERTS = 50

_HOUR_S = 3600.0


@dataclass(frozen=True)
class Alert:
    """Something a person should hear about a campaign, and when it happened (Unix time)."""

    kind: AlertKind
    campaign: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    @property
    def iso_time(self) -> str:
        return datetime.datetime.fromtimestamp(self.time, datetime.UTC).isoformat()

    def as_json(self) -> dict[str, Any]:
        """The body a webhook receives."""
        return {
            "kind": self.kind,
            "campaign": self.campaign,
            "message": self.message,
            "details": dict(self.details),
            "time": self.iso_time,
        }


def _secret(name: str) -> str:
    try:
        return os.environ[name]
    except KeyError:
        raise LookupError(f"environment variable {name} is not set") from None


def _log(notifier: LogNotifier, alert: Alert, timeout_s: float) -> None:
    logger.warning("ALERT %s %s: %s", alert.campaign, alert.kind, alert.message)


def _post(notifier: WebhookNotifier, alert: Alert, timeout_s: float) -> None:
    headers = {}
    if notifier.token_env:
        headers["Authorization"] = f"Bearer {_secret(notifier.token_env)}"
    # httpx follows no redirect: the token goes to the configured address only.
    response = httpx.post(
        notifier.url,
        content=json.dumps(alert.as_json(), default=str),
        headers={"Content-Type": "application/json", **headers},
        timeout=timeout_s,
    )
    response.raise_for_status()


def _mail(notifier: EmailNotifier, alert: Alert, timeout_s: float) -> None:
    password = _secret(notifier.password_env) if notifier.password_env else None
    message = EmailMessage()
    message["Subject"] = textwrap.shorten(
        f"[sdl] {alert.campaign} {alert.kind}: {alert.message}", 150
    )
    message["From"] = notifier.sender
    message["To"] = ", ".join(notifier.to)
    message["Date"] = email.utils.formatdate(alert.time)
    details = "".join(f"{name}: {value}\n" for name, value in alert.details.items())
    message.set_content(f"{alert.message}\n\ntime: {alert.iso_time}\n{details}")
    with smtplib.SMTP(notifier.host, notifier.port, timeout=timeout_s) as smtp:
        if notifier.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if notifier.username and password is not None:
            smtp.login(notifier.username, password)
        smtp.send_message(message)


_DELIVER: dict[str, Callable[[Any, Alert, float], None]] = {
    "log": _log,
    "webhook": _post,
    "email": _mail,
}


class _Outbox:
    """One notifier's rate limit, queue and delivery thread."""

    def __init__(
        self,
        name: str,
        notifier: LogNotifier | WebhookNotifier | EmailNotifier,
        config: AlertsConfig,
    ) -> None:
        self.name = name
        self.notifier = notifier
        self._config = config
        self._sent: collections.deque[float] = collections.deque()  # clock times, last hour
        self._queue: queue.Queue[Alert | None] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None

    def offer(self, alert: Alert, now: float) -> None:
        """Queue ``alert`` if this notifier takes its kind and has not spent its hour's share."""
        if alert.kind not in self.notifier.events:
            return
        while self._sent and now - self._sent[0] >= _HOUR_S:
            self._sent.popleft()
        if len(self._sent) >= self._config.max_per_hour and alert.kind not in CAMPAIGN_ENDS:
            logger.warning(
                "%s: %s alert dropped, %d sent in the last hour (max_per_hour)",
                self.name,
                alert.kind,
                len(self._sent),
            )
            return
        self._sent.append(now)
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._deliver_all, args=(self._queue,), name=self.name, daemon=True
            )
            self._thread.start()
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            logger.warning("%s: %s alert dropped, %d waiting", self.name, alert.kind, QUEUE_SIZE)

    def _deliver_all(self, alerts: queue.Queue[Alert | None]) -> None:
        deliver = _DELIVER[self.notifier.kind]
        while (alert := alerts.get()) is not None:
            try:
                deliver(self.notifier, alert, self._config.timeout_s)
            except Exception as error:  # a notifier's failure is reported, never raised
                logger.warning("%s could not send the %s alert: %s", self.name, alert.kind, error)

    def close(self, deadline: float) -> None:
        """Deliver what is queued until ``deadline`` (``time.monotonic``), then stop."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        alerts, self._queue = self._queue, queue.Queue(QUEUE_SIZE)  # a later alert's thread
        try:
            alerts.put(None, timeout=max(0.0, deadline - time.monotonic()))
            thread.join(max(0.0, deadline - time.monotonic()))
        except queue.Full:
            pass
        if thread.is_alive():
            logger.warning(
                "%s: still delivering at the deadline; what is left is dropped", self.name
            )


class Alerts:
    """A campaign's notifiers: ``alert`` returns at once, ``close`` lets the queue drain.

    Parameters
    ----------
    config
        The campaign file's ``alerts``; every secret it names must be in the environment
        (else :class:`~sdl.campaign.config.CampaignConfigError`, before anything runs).
    campaign
        The campaign's name, carried by every alert.
    clock
        Seconds of a monotonic clock, for the dedup window and the rate limit.
    """

    def __init__(
        self, config: AlertsConfig, campaign: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        missing = [
            f"  {path}: environment variable {name} is not set"
            for path, name in config.secret_names().items()
            if name not in os.environ
        ]
        if missing:
            raise CampaignConfigError(
                "alerts need secrets from the environment:\n" + "\n".join(missing)
            )
        self.campaign = campaign
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._last_sent: dict[tuple[str, str], float] = {}
        #: The latest alerts raised (sent or not: a notifier may not take their kind).
        self.recent: collections.deque[Alert] = collections.deque(maxlen=RECENT_ALERTS)
        self._outboxes = [
            _Outbox(f"alerts.notifiers.{index} ({notifier.kind})", notifier, config)
            for index, notifier in enumerate(config.notifiers)
        ]

    def alert(
        self,
        kind: AlertKind,
        message: str,
        *,
        key: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Send an alert to the notifiers that take ``kind``, unless one of the same ``kind``
        and ``key`` went out within the dedup window."""
        with self._lock:
            now = self._clock()
            last = self._last_sent.get((kind, key))
            if last is not None and now - last < self._config.dedup_window_s:
                logger.info("%s alert %r already sent %.0f s ago", kind, key, now - last)
                return
            self._last_sent[(kind, key)] = now
            alert = Alert(kind, self.campaign, message, dict(details or {}))
            self.recent.append(alert)
            for outbox in self._outboxes:
                outbox.offer(alert, now)

    def close(self) -> None:
        """Let the queued alerts go out, waiting at most one delivery's timeout in all."""
        deadline = time.monotonic() + self._config.timeout_s
        with self._lock:
            for outbox in self._outboxes:
                outbox.close(deadline)


def alert_fault(alerts: Alerts, fault: Fault) -> None:
    """A fault (a hang is its own kind of alert) and what the policy did about it; one alert
    per kind and action a window. Experiments are counted from 1, as the dashboard does."""
    alerts.alert(
        "hang" if fault.kind == "hang" else "fault",
        f"{fault.kind} in experiment {fault.iteration + 1} (attempt {fault.attempt}): "
        f"{fault.reason}; the policy's action: {fault.action}",
        key=f"{fault.kind} -> {fault.action}",
        details=dataclasses.asdict(fault),
    )


def alert_pause(alerts: Alerts, paused: ControlAction) -> None:
    """A pause waiting for a person: one alert per pause, however many stations wait it out."""
    alerts.alert(
        "paused",
        f"paused by {paused.who}: {paused.reason or 'no reason given'}; "
        "waiting for a person to resume it",
        key=paused.request_id,
        details={"who": paused.who, "reason": paused.reason},
    )


def alert_approval_waiting(alerts: Alerts, waiting: WaitingProposal) -> None:
    """A proposal held at the approval gate: one alert per proposal."""
    conditions = ", ".join(f"{name} = {value:g}" for name, value in waiting.conditions.items())
    alerts.alert(
        "approval_waiting",
        f"proposal {waiting.proposal_id} ({conditions}) waits for approval: "
        + "; ".join(waiting.reasons),
        key=waiting.proposal_id,
        details=waiting.as_json(),
    )


def alert_end(
    alerts: Alerts,
    result: CampaignResult,
    budget: int,
    *,
    stopped: str | None,
    target: str | None,
    stop_reason: str | None,
) -> None:
    """``aborted`` with why (``stopped``), or ``finished`` after ``target_reached`` where the
    objectives' targets were met (``target``)."""
    done = len(result.records)
    details = {
        "experiments": done,
        "budget": budget,
        "faults": len(result.faults),
        "refused": result.refused,
    }
    if stopped:
        alerts.alert(
            "aborted", f"stopped after {done} of {budget} experiments: {stopped}", details=details
        )
        return
    if target is not None:
        alerts.alert("target_reached", target, details=details)
    why = f" ({stop_reason})" if stop_reason else ""
    alerts.alert("finished", f"{done} of {budget} experiments done{why}", details=details)
