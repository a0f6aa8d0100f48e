"""The campaign file's ``devices.beamline``: a beamline's own devices, named by import path.

A beamline has its devices already, in its ophyd profile (an ``EpicsMotor`` stage, an
areaDetector camera, ophyd-async devices). This section names them instead of our device
shapes: a condition may be set by any movable device, an instrument role (``xrd``,
``microscope``, ``magnetometer``) may be served by any triggerable, readable detector, whose
data keys are mapped to the readings that role's analysis takes, and more devices may be
read before and after each experiment (bluesky's baseline). Names are resolved, and the
devices checked against the bluesky protocols, when the instruments are built
(:mod:`sdl.lab.beamline`): validating a campaign file never imports a beamline's profile,
which would connect to its hardware. docs/epics.md, "A beamline's own devices", shows it.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from sdl.campaign.schema import FilePath, StrictModel

#: What each instrument role's analysis reads: reading -> required (the instrument time may
#: be missing: then the role's time is not counted in the campaign's instrument hours).
ROLE_READINGS: dict[str, dict[str, bool]] = {
    "xrd": {"two_theta": True, "counts": True, "scan_time_s": False},
    "microscope": {"image": True, "pixel_size_nm": True, "acquisition_time_s": False},
    "magnetometer": {
        "polarisation_t": True,
        "polarisation_t_std": True,
        "measurement_time_s": False,
    },
}

_REFERENCE = re.compile(r"^([A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:)?[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def _reference(text: str) -> str:
    if not _REFERENCE.match(text):
        raise ValueError(
            f"{text!r} is not a device reference: write 'name' (an object of the profile, "
            "'stage.x' for a component) or 'package.module:name'"
        )
    return text


#: A device named by the profile's attribute (``stage.x``) or an import path (``pkg.mod:obj``).
DeviceReference = Annotated[str, AfterValidator(_reference)]


class BeamlineDetector(StrictModel):
    """A beamline detector serving one instrument role, and where the role's readings are."""

    device: DeviceReference
    keys: dict[str, str] = Field(
        description="the role's reading -> the device's data key, e.g. "
        "{image: sem_image, pixel_size_nm: sem_pixel_size}"
    )


class BeamlineConfig(StrictModel):
    """A beamline's own devices in place of (or beside) our device shapes."""

    profile: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$",
        description="the module that makes the beamline's devices (its ophyd profile); "
        "bare device names are looked up in it",
    )
    conditions: dict[str, DeviceReference] = Field(
        default_factory=dict,
        description="condition -> a movable device that sets it (in the condition's unit)",
    )
    detectors: dict[str, BeamlineDetector] = Field(
        default_factory=dict,
        description=f"instrument role ({', '.join(ROLE_READINGS)}) -> the detector serving it",
    )
    baseline: list[DeviceReference] = Field(
        default_factory=list,
        description="devices read before and after every experiment (its baseline stream)",
    )
    files: list[FilePath] = Field(
        default_factory=list,
        description="folders where the beamline's detectors write the files its runs point "
        "to (an areaDetector's file plugin path); the campaign's catalog serves them",
    )

    def role_keys(self) -> dict[str, str]:
        """Each mapped device data key -> the key the role's analysis reads
        (``sem_image`` -> ``microscope_image``)."""
        return {
            key: f"{role}_{reading}"
            for role, detector in self.detectors.items()
            for reading, key in detector.keys.items()
        }

    def problems(self) -> list[tuple[tuple[str | int, ...], str, object]]:
        """Roles and readings that no analysis knows, and required readings not mapped."""
        found: list[tuple[tuple[str | int, ...], str, object]] = []
        for role, detector in self.detectors.items():
            where = ("devices", "beamline", "detectors", role)
            readings = ROLE_READINGS.get(role)
            if readings is None:
                found.append(
                    (
                        where,
                        f"no analysis reads a role {role!r}; roles: {list(ROLE_READINGS)}",
                        role,
                    )
                )
                continue
            unknown = sorted(set(detector.keys) - set(readings))
            missing = sorted(
                r for r, required in readings.items() if required and r not in detector.keys
            )
            if unknown or missing:
                found.append(
                    (
                        (*where, "keys"),
                        f"the {role} analysis reads {list(readings)}"
                        + (f"; unknown {unknown}" if unknown else "")
                        + (f"; map the required {missing}" if missing else ""),
                        detector.keys,
                    )
                )
        return found
