"""The strict base of every campaign-file model, and how a refusal names its field."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


class CampaignConfigError(ValueError):
    """A campaign file that cannot be run; the message lists every bad field by its path."""


class StrictModel(BaseModel):
    # Strict: `budget: true` is not 1 and `ph: "4"` is not 4 (an int is still a float).
    # JSON has no infinity (PostgreSQL refuses it): a speed-up of inf is written "Infinity".
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, ser_json_inf_nan="strings")


#: A file path, given as text in the campaign file.
FilePath = Annotated[Path, Field(strict=False)]


def refuse(problems: Sequence[tuple[tuple[str | int, ...], str, Any]]) -> NoReturn:
    """Raise each ``(field path, message, bad value)`` as a fault of its own field."""
    raise ValidationError.from_exception_data(
        "CampaignConfig",
        [
            InitErrorDetails(type=PydanticCustomError("campaign", message), loc=loc, input=value)
            for loc, message, value in problems
        ],
    )
