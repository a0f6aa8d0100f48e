"""A queueserver request that times out is asked again with back-off, never duplicates an
experiment, and only becomes a disconnect once its tries are spent (no services needed)."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from bluesky_queueserver_api.zmq import REManagerAPI

from sdl.campaign.config import CampaignConfigError, QueueserverConfig, parse_campaign
from sdl.facility.queue_station import (
    QueueRequests,
    QueueserverNotAnswering,
    QueueStation,
    backoff_s,
)
from sdl.lab.stations import Failed, Measured

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_bo.yaml"

#: Retries without waiting, for tests of what is sent.
NO_WAIT = QueueserverConfig(retries=3, backoff_s=0.0, max_backoff_s=0.0)


class FakeQueueserver:
    """An ``REManagerAPI`` stand-in that times out on the first ``timeouts[method]`` tries
    of each method. With ``replies_lost``, a timed-out try took effect on the queueserver
    and only its reply was lost; without, the request never arrived. Methods in ``refused``
    are answered no, as the queueserver refuses a bad plan."""

    def __init__(
        self,
        timeouts: dict[str, int] | None = None,
        *,
        replies_lost: bool = False,
        refused: tuple[str, ...] = (),
    ) -> None:
        self.timeouts = Counter(timeouts or {})
        self.replies_lost = replies_lost
        self.refused = refused
        self.sent: Counter[str] = Counter()
        self.queue: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.manager_state = "idle"
        self.pause_pending = False
        self.environment = True

    def _request(self, method: str, effect: Callable[[], Any] = lambda: None) -> Any:
        self.sent[method] += 1
        if method in self.refused:
            raise REManagerAPI.RequestFailedError({"method": method}, {"msg": "not allowed"})
        if self.timeouts[method]:
            self.timeouts[method] -= 1
            if self.replies_lost:
                effect()
            raise REManagerAPI.RequestTimeoutError("timeout occurred", {"method": method})
        return effect()

    def status(self, *, reload: bool = False) -> dict[str, Any]:
        return self._request(
            "status",
            lambda: {
                "manager_state": self.manager_state,
                "re_state": "running" if self.manager_state == "executing_queue" else "idle",
                "items_in_queue": len(self.queue),
                "pause_pending": self.pause_pending,
                "worker_environment_exists": self.environment,
            },
        )

    def environment_open(self) -> dict[str, Any]:
        return self._request("environment_open", lambda: setattr(self, "environment", True))

    def item_remove(self, *, uid: str) -> dict[str, Any]:
        def remove() -> None:
            self.queue = [item for item in self.queue if item["item_uid"] != uid]

        return self._request("item_remove", remove)

    def item_add(self, item: Any) -> dict[str, Any]:
        return self._request("item_add", lambda: self.queue.append(item.to_dict()))

    def queue_start(self) -> dict[str, Any]:
        def start() -> None:
            if self.manager_state != "idle":  # as the queueserver answers a second start
                raise REManagerAPI.RequestFailedError({}, {"msg": "RE Manager is busy"})
            self.manager_state = "executing_queue"

        return self._request("queue_start", start)

    def queue_get(self, *, reload: bool = False) -> dict[str, Any]:
        return self._request("queue_get", lambda: {"items": list(self.queue), "running_item": {}})

    def history_get(self, *, reload: bool = False) -> dict[str, Any]:
        return self._request("history_get", lambda: {"items": list(self.history)})

    def re_pause(self, option: str) -> dict[str, Any]:
        return self._request("re_pause", lambda: setattr(self, "pause_pending", True))

    def close(self) -> None:
        pass


class Answered:
    """Outcomes as the stream gives them, here at once: every attempt is measured."""

    def wait(self, key: tuple[str, int], timeout_s: float) -> Measured:
        return Measured(f"raw-{key[0]}-{key[1]}", {"photoactive_area_m2_g": 12.0}, 60.0)


def _station(fake: FakeQueueserver, policy: QueueserverConfig = NO_WAIT) -> QueueStation:
    return QueueStation(
        "station-0",
        "tcp://127.0.0.1:60615",
        Answered(),  # type: ignore[arg-type]
        lambda: None,
        requests=policy,
        api=fake,
    )


def _attempt(station: QueueStation) -> Measured | Failed:
    return station.attempt({"temperature_c": 500.0}, {"_id": "p1", "attempt": 1})


def test_a_timed_out_read_is_asked_again_after_a_growing_back_off():
    fake = FakeQueueserver({"status": 3})
    waits: list[float] = []
    policy = QueueserverConfig(retries=4, backoff_s=1.0, max_backoff_s=30.0)
    requests = QueueRequests(fake, "station-0", policy, sleep=waits.append, rng=random.Random(3))

    assert requests.ask("status", lambda api: api.status()["manager_state"]) == "idle"
    assert fake.sent["status"] == 4
    caps = [1.0, 2.0, 4.0]  # backoff_s doubled per retry
    assert len(waits) == 3
    assert all(cap / 2 <= wait <= cap for wait, cap in zip(waits, caps, strict=True))
    assert waits[0] < waits[1] < waits[2]  # jitter stays within each doubling


def test_the_back_off_stops_growing_at_its_cap():
    policy = QueueserverConfig(backoff_s=1.0, max_backoff_s=5.0)
    rng = random.Random(0)
    assert all(2.5 <= backoff_s(policy, 12, rng) <= 5.0 for _ in range(100))


def test_each_retry_is_logged_with_the_request_name(caplog):
    fake = FakeQueueserver({"status": 2})
    with caplog.at_level(logging.WARNING, logger="sdl.facility.queue_station"):
        assert _station(fake).state == "idle"
    retries = [r.getMessage() for r in caplog.records]
    assert len(retries) == 2
    assert all("status timed out" in line and "station-0" in line for line in retries)
    assert "try 1 of 4" in retries[0] and "try 2 of 4" in retries[1]


def test_a_plan_whose_reply_was_lost_is_not_added_again():
    fake = FakeQueueserver({"item_add": 1}, replies_lost=True)
    outcome = _attempt(_station(fake))
    assert isinstance(outcome, Measured)
    assert fake.sent["item_add"] == 1 and len(fake.queue) == 1  # one experiment, not two


def test_a_plan_that_never_arrived_is_added_again():
    fake = FakeQueueserver({"item_add": 1})
    outcome = _attempt(_station(fake))
    assert isinstance(outcome, Measured)
    assert fake.sent["item_add"] == 2 and len(fake.queue) == 1


def test_a_plan_already_run_is_found_in_the_history_and_not_added_again():
    fake = FakeQueueserver({"item_add": 1}, replies_lost=True)
    original_add = fake.item_add

    def add_and_run(item: Any) -> Any:  # the plan ran and ended before anyone asked
        try:
            return original_add(item)
        finally:
            fake.history.extend(fake.queue)
            fake.queue.clear()

    fake.item_add = add_and_run  # type: ignore[method-assign]
    assert isinstance(_attempt(_station(fake)), Measured)
    assert fake.sent["item_add"] == 1 and len(fake.history) == 1


def test_a_started_queue_whose_reply_was_lost_is_not_started_again():
    fake = FakeQueueserver({"queue_start": 1}, replies_lost=True)
    outcome = _attempt(_station(fake))
    assert isinstance(outcome, Measured)  # not refused as "RE Manager is busy"
    assert fake.sent["queue_start"] == 1


def test_a_pause_that_took_effect_is_not_sent_again():
    fake = FakeQueueserver({"re_pause": 1}, replies_lost=True)
    fake.manager_state = "executing_queue"
    _station(fake).pause()
    assert fake.sent["re_pause"] == 1 and fake.pause_pending


def test_a_queueserver_that_never_answers_is_a_disconnect_naming_the_request():
    fake = FakeQueueserver({"item_add": 99})
    outcome = _attempt(_station(fake))
    assert isinstance(outcome, Failed) and outcome.kind == "disconnect"
    assert "station-0's queueserver at tcp://127.0.0.1:60615" in outcome.reason
    assert "item_add timed out on all 4 tries" in outcome.reason
    assert fake.sent["item_add"] == 4 and fake.sent["queue_get"] == 3  # a check before each resend
    assert len(fake.queue) == 0


def test_spent_tries_raise_naming_the_request():
    fake = FakeQueueserver({"status": 99})
    requests = QueueRequests(fake, "station-1", NO_WAIT, sleep=lambda _: None)
    with pytest.raises(QueueserverNotAnswering, match=r"station-1: status timed out on all 4"):
        requests.ask("status", lambda api: api.status())
    assert fake.sent["status"] == 4


def test_a_refusal_is_an_instrument_error_at_once():
    fake = FakeQueueserver(refused=("item_add",))
    outcome = _attempt(_station(fake))
    assert isinstance(outcome, Failed) and outcome.kind == "instrument_error"
    assert fake.sent["item_add"] == 1


def _campaign(**queueserver: Any) -> dict[str, Any]:
    campaign = yaml.safe_load(EXAMPLE.read_text())
    campaign.setdefault("devices", {})["queueserver"] = queueserver
    return campaign


def test_the_policy_is_read_from_the_campaign_file_with_defaults():
    config = parse_campaign(_campaign(retries=6, backoff_s=0.5))
    assert config.devices.queueserver == QueueserverConfig(
        request_timeout_s=10.0, retries=6, backoff_s=0.5, max_backoff_s=30.0
    )


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            {"retries": -1},
            r"devices\.queueserver\.retries: Input should be greater than or equal to 0",
        ),
        (
            {"retries": 21},
            r"devices\.queueserver\.retries: Input should be less than or equal to 20",
        ),
        ({"request_timeout_s": 0}, r"devices\.queueserver\.request_timeout_s: .*greater than 0"),
        (
            {"backoff_s": 10, "max_backoff_s": 5},
            r"devices\.queueserver: .*max_backoff_s must be at least backoff_s \(10 s\), got 5 s",
        ),
        ({"retry": 3}, r"devices\.queueserver\.retry: Extra inputs are not permitted"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_field_and_range(policy, message):
    with pytest.raises(CampaignConfigError, match=message):
        parse_campaign(_campaign(**policy))


def test_a_restarted_queueserver_gets_its_environment_opened_before_the_plan():
    fake = FakeQueueserver()
    fake.environment = False  # a queueserver restarted by its service manager
    assert isinstance(_attempt(_station(fake)), Measured)
    assert fake.sent["environment_open"] == 1 and fake.environment
    assert fake.sent["item_add"] == 1


class Silent:
    """A stream that never reports an outcome."""

    def wait(self, key: tuple[str, int], timeout_s: float) -> None:
        return None


class Restarting(FakeQueueserver):
    """A queueserver whose manager dies as the plan starts and comes back idle, with the plan
    filed in its history with exit status ``unknown`` (as bluesky-queueserver does)."""

    def queue_start(self) -> dict[str, Any]:
        def die_and_come_back() -> None:
            self.history += [{**item, "result": {"exit_status": "unknown"}} for item in self.queue]
            self.queue = []

        return self._request("queue_start", die_and_come_back)


def test_a_plan_lost_when_its_queueserver_restarted_is_an_instrument_error_not_a_long_wait():
    station = QueueStation(
        "station-0", "tcp://127.0.0.1:60615", Silent(), lambda: None, timeout_s=3600,
        api=Restarting(),
    )  # fmt: skip
    outcome = _attempt(station)
    assert isinstance(outcome, Failed) and outcome.kind == "instrument_error"
    assert "restarted while the plan ran" in outcome.reason


def test_settling_takes_out_an_earlier_agent_s_plans_and_waits_for_the_running_one():
    fake = FakeQueueserver()
    fake.queue.append({"item_uid": "u1", "kwargs": {"md": {"_id": "earlier", "attempt": 1}}})
    fake.manager_state = "executing_queue"
    checks: list[None] = []

    def checkpoint() -> None:  # the running plan ends while the station settles
        checks.append(None)
        fake.manager_state = "idle"

    station = QueueStation("station-0", "tcp://127.0.0.1:60615", Silent(), checkpoint, api=fake)
    station.settle()
    assert fake.queue == [] and fake.sent["item_remove"] == 1
    assert checks and fake.manager_state == "idle"
