"""Alerts reach people by log, webhook and e-mail, without ever holding up the campaign; the
receivers are an HTTP server and an SMTP server started here on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from test_control import quick_campaign

from sdl.campaign.alerts import AlertsConfig
from sdl.campaign.config import CampaignConfigError, parse_campaign
from sdl.loop.alerts import Alerts
from sdl.loop.runner import CampaignRunner
from sdl.records.catalog import campaign_runs, open_catalog

ALERTS_LOGGER = "sdl.loop.alerts"


class Webhook:
    """An HTTP receiver on 127.0.0.1: keeps each POST's JSON body and headers, and counts
    the POSTs it has answered; once ``hold`` is called it answers none until ``release``."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.answered = 0
        self.release = threading.Event()
        self.release.set()
        self.on_post = lambda body: None
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                webhook.posts.append((body, dict(self.headers)))
                webhook.on_post(body)
                webhook.release.wait(300)
                self.send_response(204)
                self.end_headers()
                webhook.answered += 1

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def hold(self) -> None:
        self.release.clear()

    @property
    def kinds(self) -> list[str]:
        return [body["kind"] for body, _ in self.posts]


class Mailbox:
    """What an SMTP server on 127.0.0.1 was sent, and the passwords it was given."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.passwords: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content.decode())
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth: Any):
        self.passwords.append(auth.password.decode())
        return AuthResult(success=True)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    receiver = Webhook()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.release.set()
    receiver.server.shutdown()
    receiver.server.server_close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), _free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        authenticator=box.authenticate,
        auth_require_tls=False,
        ready_timeout=60,
    )
    controller.start()
    yield box, port
    controller.stop()


def with_alerts(config: Any, **alerts: Any) -> Any:
    """``config`` with an ``alerts`` section, validated as a campaign file would be."""
    return parse_campaign({**config.model_dump(), "alerts": alerts})


@pytest.mark.slow
def test_a_campaign_mails_its_fault_and_posts_its_end_with_secrets_from_the_environment(
    data_dir, webhook, mailbox, monkeypatch
):
    box, port = mailbox
    token, password = f"token-{uuid.uuid4().hex}", f"password-{uuid.uuid4().hex}"
    monkeypatch.setenv("SDL_TEST_WEBHOOK_TOKEN", token)
    monkeypatch.setenv("SDL_TEST_SMTP_PASSWORD", password)
    faulty = quick_campaign(
        data_dir, 2, faults={"instrument_error": {"at": [0], "devices": ["xrd"]}}
    )
    config = with_alerts(
        faulty,
        notifiers=[
            {
                "kind": "webhook",
                "url": webhook.url,
                "token_env": "SDL_TEST_WEBHOOK_TOKEN",
                "events": ["finished"],
            },
            {
                "kind": "email",
                "host": "127.0.0.1",
                "port": port,
                "starttls": False,
                "username": "sdl",
                "password_env": "SDL_TEST_SMTP_PASSWORD",
                "sender": "sdl@lab.example",
                "to": ["operator@lab.example"],
                "events": ["fault"],
            },
        ],
        timeout_s=60.0,
    )
    result = CampaignRunner(config).run()

    assert len(result.records) == 2 and len(result.faults) == 1
    ((body, headers),) = webhook.posts
    assert body["kind"] == "finished" and body["campaign"] == config.name
    assert body["details"]["experiments"] == 2
    assert headers["Authorization"] == f"Bearer {token}"
    (mail,) = box.messages
    assert "fault" in mail and "instrument_error" in mail and "To: operator@lab.example" in mail
    assert box.passwords == [password]
    (start,) = [
        run.metadata["start"]
        for run in campaign_runs(open_catalog(data_dir), config.name, "campaign")
    ]
    recorded = json.dumps(start)
    assert token not in recorded and password not in recorded
    notifiers = start["config"]["alerts"]["notifiers"]
    assert [n.get("token_env") or n.get("password_env") for n in notifiers] == [
        "SDL_TEST_WEBHOOK_TOKEN",
        "SDL_TEST_SMTP_PASSWORD",
    ]


@pytest.mark.slow
def test_a_pause_alert_that_no_one_answers_holds_up_neither_the_person_nor_the_campaign(
    data_dir, webhook
):
    config = with_alerts(
        quick_campaign(data_dir, 3),
        notifiers=[{"kind": "webhook", "url": webhook.url, "events": ["paused", "finished"]}],
        timeout_s=300.0,
    )
    runner = CampaignRunner(config)
    webhook.hold()  # the receiver takes the alert and never answers, until released
    webhook.on_post = lambda body: runner.control.resume("alice", "on my way")
    held_to_the_end = []

    def last_experiment(result: Any) -> None:
        if len(result.records) == config.budget:
            held_to_the_end.append(webhook.answered == 0 and webhook.kinds == ["paused"])
            webhook.release.set()

    runner.on_experiment = last_experiment
    runner.control.pause("alice", "refilling precursor")
    result = runner.run()

    assert len(result.records) == 3 and result.stopped is None
    assert held_to_the_end == [True]
    assert webhook.kinds == ["paused", "finished"]
    assert "refilling precursor" in webhook.posts[0][0]["message"]


@pytest.mark.slow
def test_a_reached_target_is_logged_before_the_end(data_dir, caplog):
    target = quick_campaign(data_dir, 3).model_dump()
    target["objectives"] = [{"name": "anatase_fraction", "direction": "maximize", "target": 0.0}]
    config = with_alerts(parse_campaign(target), notifiers=[{"kind": "log"}], timeout_s=60.0)
    with caplog.at_level(logging.WARNING, logger=ALERTS_LOGGER):
        result = CampaignRunner(config).run()

    assert len(result.records) == 1
    alerts = [r.getMessage() for r in caplog.records if r.name == ALERTS_LOGGER]
    assert [line.split(":")[0] for line in alerts] == [
        f"ALERT {config.name} target_reached",
        f"ALERT {config.name} finished",
    ]
    assert "target reached by trial" in alerts[0]


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _logged_alerts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("ALERT")]


def test_an_alert_repeated_within_the_dedup_window_goes_out_once(caplog):
    clock = Clock()
    config = AlertsConfig(notifiers=[{"kind": "log"}], dedup_window_s=60.0)
    alerts = Alerts(config, "c", clock=clock)
    with caplog.at_level(logging.INFO, logger=ALERTS_LOGGER):
        alerts.alert("fault", "timeout 1", key="timeout -> retry")
        clock.now = 59.0
        alerts.alert("fault", "timeout 2", key="timeout -> retry")
        alerts.alert("fault", "drift", key="drift -> pause")
        clock.now = 61.0
        alerts.alert("fault", "timeout 3", key="timeout -> retry")
        alerts.close()

    assert _logged_alerts(caplog) == [
        "ALERT c fault: timeout 1",
        "ALERT c fault: drift",
        "ALERT c fault: timeout 3",
    ]


def test_a_notifier_sends_at_most_max_per_hour_but_always_the_campaigns_end(caplog):
    clock = Clock()
    config = AlertsConfig(notifiers=[{"kind": "log"}], max_per_hour=2, dedup_window_s=0.0)
    alerts = Alerts(config, "c", clock=clock)
    with caplog.at_level(logging.WARNING, logger=ALERTS_LOGGER):
        for second in range(3):
            clock.now = float(second)
            alerts.alert("fault", f"fault {second}", key=str(second))
        alerts.alert("finished", "done")
        clock.now = 3601.0  # the first two have left the last hour
        alerts.alert("paused", "again")
        alerts.close()

    assert _logged_alerts(caplog) == [
        "ALERT c fault: fault 0",
        "ALERT c fault: fault 1",
        "ALERT c finished: done",
        "ALERT c paused: again",
    ]
    assert any(
        "fault alert dropped, 2 sent in the last hour" in r.getMessage() for r in caplog.records
    )


def test_an_unreachable_webhook_is_logged_and_raises_nothing(caplog):
    config = AlertsConfig(
        notifiers=[{"kind": "webhook", "url": f"http://127.0.0.1:{_free_port()}/"}], timeout_s=60.0
    )
    alerts = Alerts(config, "c")
    with caplog.at_level(logging.WARNING, logger=ALERTS_LOGGER):
        alerts.alert("aborted", "stopped")
        alerts.close()

    assert any("could not send the aborted alert" in r.getMessage() for r in caplog.records)


def test_a_missing_secret_stops_the_campaign_before_it_touches_anything(tmp_path, monkeypatch):
    monkeypatch.delenv("SDL_TEST_UNSET_TOKEN", raising=False)
    config = with_alerts(
        quick_campaign(tmp_path / "data", 1),
        notifiers=[
            {"kind": "log"},
            {
                "kind": "webhook",
                "url": "https://hooks.example/x",
                "token_env": "SDL_TEST_UNSET_TOKEN",
            },
        ],
    )
    with pytest.raises(
        CampaignConfigError,
        match=r"alerts\.notifiers\.1\.token_env: environment variable SDL_TEST_UNSET_TOKEN ",
    ):
        CampaignRunner(config)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("notifier", "problem"),
    [
        (
            {"kind": "webhook", "url": "https://hooks.example/x", "token": "s3cret"},
            r"webhook\.token: secrets are not written in the campaign file; .* \(got '\*{3}'\)",
        ),
        (
            {"kind": "webhook", "url": "http://hooks.example/x", "token_env": "T"},
            r"url: a token is sent over https only",
        ),
        ({"kind": "webhook", "url": "hooks.example"}, r"url: expected an http:// or https://"),
        (
            {"kind": "webhook", "url": "https://bot:s3cret@hooks.example/"},
            r"webhook\.url: a login .* secret; use token_env \(got '\*\*\*'\)",
        ),
        ({"kind": "pager", "number": "112"}, r"alerts\.notifiers\.0: Input tag 'pager'"),
        ({"kind": "log", "level": "info"}, r"alerts\.notifiers\.0\.log\.level: Extra inputs"),
        (
            {
                "kind": "email",
                "host": "smtp.example",
                "sender": "a@b",
                "to": ["c@d"],
                "username": "u",
            },
            r"username and password_env: give both",
        ),
        (
            {
                "kind": "email",
                "host": "smtp.example",
                "sender": "a@b",
                "to": ["c@d"],
                "username": "u",
                "password_env": "P",
                "starttls": False,
            },
            r"starttls: a password is sent encrypted only",
        ),
        ({"kind": "log", "events": ["finished", "lunch"]}, r"events\.1: Input should be"),
    ],
    ids=[
        "token",
        "http-token",
        "url",
        "url-login",
        "kind",
        "extra",
        "login",
        "plain-password",
        "event",
    ],
)
def test_a_bad_notifier_is_refused_by_its_field_never_showing_a_secret(tmp_path, notifier, problem):
    with pytest.raises(CampaignConfigError, match=problem) as refused:
        with_alerts(quick_campaign(tmp_path, 1), notifiers=[notifier])
    assert "s3cret" not in str(refused.value)
