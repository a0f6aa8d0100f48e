"""One experiment as one Bluesky run: synthesise a sample at given conditions, then measure it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Readable, Triggerable
from bluesky.utils import FailedStatus, MsgGenerator, RequestAbort, RequestStop


class Detector(Readable, Triggerable, Protocol):
    """An instrument of an experiment: triggered to measure, then read."""


def device_error(error: BaseException) -> BaseException:
    """The device's own error inside a failed Status (or the error itself)."""
    if isinstance(error, FailedStatus) and error.args and hasattr(error.args[0], "exception"):
        return error.args[0].exception() or error
    return error


def error_text(error: BaseException) -> str:
    """What went wrong, in the device's own words: ``"ErrorType: message"``."""
    cause = device_error(error)
    return f"{type(cause).__name__}: {cause}"


def run_explaining_failures(plan: MsgGenerator[Any], md: Mapping[str, Any]) -> MsgGenerator[str]:
    """bluesky's ``run_wrapper``, except that a failed run's stop document says which device
    error ended it (``"InstrumentFault: ..."``, not the failed Status), so whoever reads only
    the documents (a stream subscriber, the catalog) knows what went wrong."""
    uid = yield from bps.open_run(dict(md))

    def except_plan(error: BaseException) -> MsgGenerator[None]:
        if isinstance(error, RequestAbort | RequestStop):
            yield from bps.close_run(exit_status=error.exit_status)
        else:
            yield from bps.close_run(exit_status="fail", reason=error_text(error))

    yield from bpp.contingency_wrapper(plan, except_plan=except_plan, else_plan=bps.close_run)
    return uid


def set_conditions(
    reactor: Any, conditions: Mapping[str, float], movers: Mapping[str, Any] | None = None
) -> MsgGenerator[None]:
    """Move every condition at once and wait for all of them.

    Parameters
    ----------
    reactor
        A device with one settable component per condition name it owns.
    conditions
        Condition name -> value, in the units the reactor's components report.
    movers
        Condition name -> a movable device that sets it instead (a beamline's motor).

    Yields
    ------
    Msg
        ``set`` messages for all setpoints in one group, then ``wait``.
    """
    movers = movers or {}
    unknown = sorted(set(conditions) - set(reactor.condition_names) - set(movers))
    if unknown:
        raise ValueError(
            f"{reactor.name} has no condition(s) {unknown}; it has "
            f"{[*reactor.condition_names, *movers]}"
        )
    moves: list[Any] = []
    for name, value in conditions.items():
        moves += [movers[name] if name in movers else getattr(reactor, name), value]
    yield from bps.mv(*moves)


def synthesize_and_measure(
    reactor: Any,
    detectors: Sequence[Detector],
    conditions: Mapping[str, float],
    *,
    md: Mapping[str, Any] | None = None,
    movers: Mapping[str, Any] | None = None,
    baseline: Sequence[Readable] = (),
) -> MsgGenerator[str]:
    """Synthesise one sample at ``conditions`` and measure it with each detector, as one run.

    The run's ``primary`` stream holds one event: the reactor's reading (conditions,
    sample id, synthesis time), every mover's reading (where it reached) and every
    detector's reading of that sample.

    Parameters
    ----------
    reactor
        Synthesis device: condition setpoints plus ``trigger()`` that makes the sample.
    detectors
        Instruments that measure the sample the reactor just made, triggered together.
    conditions
        Condition name -> value; every name must be one of the reactor's conditions.
    md
        Extra run metadata (campaign id, iteration, proposal ``_id``, agent name).
    movers
        Condition name -> a movable device that sets that condition, read with the reactor.
    baseline
        Devices read before and after the experiment, into the run's ``baseline`` stream.

    Yields
    ------
    Msg
        The messages of one run.

    Returns
    -------
    str
        The run's uid.

    See Also
    --------
    sdl.loop.runner.CampaignRunner : the closed loop that calls this plan.
    """
    movers = dict(movers or {})
    _md = {
        "plan_name": "synthesize_and_measure",
        "purpose": "experiment",
        "conditions": dict(conditions),
        "reactor": reactor.name,
        "detectors": [detector.name for detector in detectors],
        "hints": {
            "dimensions": [
                ([movers[name].name if name in movers else f"{reactor.name}_{name}"], "primary")
                for name in conditions
            ]
        },
        **(md or {}),
    }

    @bpp.stage_decorator([reactor, *detectors])
    def inner() -> MsgGenerator[str]:
        run = run_explaining_failures(steps(), _md)
        return (yield from bpp.baseline_wrapper(run, list(baseline)) if baseline else run)

    def steps() -> MsgGenerator[None]:
        yield from set_conditions(reactor, conditions, movers)
        yield from bps.checkpoint()  # a pause here resumes with the synthesis
        yield from bps.trigger(reactor, wait=True)
        yield from measure(detectors)
        yield from bps.checkpoint()  # a pause here resumes with the reading
        yield from bps.create("primary")
        for device in (reactor, *movers.values(), *detectors):
            yield from bps.read(device)
        yield from bps.save()

    return (yield from inner())


def measure(detectors: Sequence[Detector]) -> MsgGenerator[None]:
    """Trigger every detector at once and wait until all have finished."""
    group = "measure"
    for detector in detectors:
        yield from bps.trigger(detector, group=group)
    yield from bps.wait(group=group)
