"""Following a document stream run by run: runs begun before the follower joined are skipped."""

from __future__ import annotations

from event_model import compose_run

from sdl.records.routing import RunCollector, RunFollower


def _run(value: float):
    bundle = compose_run(metadata={"purpose": "experiment"})
    descriptor = bundle.compose_descriptor(
        name="primary", data_keys={"x": {"source": "sim", "dtype": "number", "shape": []}}
    )
    event = descriptor.compose_event(data={"x": value}, timestamps={"x": 0.0})
    return [
        ("start", bundle.start_doc),
        ("descriptor", descriptor.descriptor_doc),
        ("event", event),
        ("stop", bundle.compose_stop()),
    ]


def test_interleaved_runs_reach_their_own_collectors():
    finished = []
    follower = RunFollower([lambda name, start: ([RunCollector(finished.append)], [])])
    first, second = _run(1.0), _run(2.0)
    for pair in zip(first, second, strict=True):
        for name, doc in pair:
            follower(name, doc)
    assert [
        [doc["data"]["x"] for name, doc in run if name == "event_page"] for run in finished
    ] == [
        [[1.0]],
        [[2.0]],
    ]


def test_a_run_begun_before_the_follower_joined_is_skipped_without_error():
    finished = []
    follower = RunFollower([lambda name, start: ([RunCollector(finished.append)], [])])
    joined_late, whole = _run(1.0), _run(2.0)
    for name, doc in [*joined_late[1:], *whole]:
        follower(name, doc)
    assert len(finished) == 1 and finished[0][0][1] == whole[0][1]
