"""What the campaign file says about alerts: notifiers, the events each takes, the limits.

Secrets are named by their environment variable, never written here: the campaign file and
its copy in the catalog are read by others. Delivering is :mod:`sdl.loop.alerts`.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, model_validator

from sdl.campaign.schema import StrictModel, refuse

#: What a campaign tells its notifiers about (docs/alerts.md).
AlertKind = Literal[
    "hang", "fault", "paused", "approval_waiting", "finished", "aborted", "target_reached"
]

#: Secrets written into a notifier, and the field that names their environment variable.
_SECRET_FIELDS = {"token": "token_env", "password": "password_env"}

#: What an error message shows instead of a secret written where it does not belong.
SECRET_SHOWN_AS = "***"

#: The name of an environment variable.
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Notifier(StrictModel):
    """Where alerts go; secrets are named by their environment variable, never written here
    (the campaign file and its copy in the catalog are read by others)."""

    events: list[AlertKind] = Field(
        default_factory=lambda: list(get_args(AlertKind)),
        min_length=1,
        description="the kinds of alert this notifier sends (default: all)",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_secret_in_the_file(cls, data: Any) -> Any:
        written = [secret for secret in _SECRET_FIELDS if isinstance(data, dict) and secret in data]
        if written:
            refuse(
                [
                    (
                        (secret,),
                        "secrets are not written in the campaign file; put it in an environment "
                        f"variable and name that with {_SECRET_FIELDS[secret]}",
                        SECRET_SHOWN_AS,
                    )
                    for secret in written
                ]
            )
        return data


class LogNotifier(_Notifier):
    """A WARNING line in the campaign's log."""

    kind: Literal["log"]


class WebhookNotifier(_Notifier):
    """An HTTP POST of the alert as JSON, with ``Authorization: Bearer $token_env``."""

    kind: Literal["webhook"]
    url: str = Field(description="http(s) address the alert is posted to")
    token_env: EnvName | None = Field(
        default=None, description="environment variable holding the bearer token"
    )

    @model_validator(mode="after")
    def _url_fits_the_token(self) -> WebhookNotifier:
        url = urllib.parse.urlsplit(self.url)
        if url.username or url.password:
            refuse(
                [(("url",), "a login in the address is a secret; use token_env", SECRET_SHOWN_AS)]
            )
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"url: expected an http:// or https:// address, got {self.url!r}")
        if self.token_env and url.scheme == "http" and not _loopback(url.hostname):
            raise ValueError("url: a token is sent over https only (http to 127.0.0.1 is fine)")
        return self


#: An e-mail address, checked for its shape only.
EmailAddress = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]


class EmailNotifier(_Notifier):
    """An e-mail through an SMTP server (port 587 with STARTTLS by default)."""

    kind: Literal["email"]
    host: str = Field(min_length=1, description="SMTP server")
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = Field(default=True, description="encrypt with STARTTLS before logging in")
    username: str | None = Field(default=None, description="SMTP login, with password_env")
    password_env: EnvName | None = Field(
        default=None, description="environment variable holding the SMTP password"
    )
    sender: EmailAddress = Field(description="the From address")
    to: list[EmailAddress] = Field(min_length=1, description="recipients")

    @model_validator(mode="after")
    def _login_is_whole_and_encrypted(self) -> EmailNotifier:
        if (self.username is None) != (self.password_env is None):
            raise ValueError("username and password_env: give both to log in, or neither")
        if self.password_env and not self.starttls and not _loopback(self.host):
            raise ValueError("starttls: a password is sent encrypted only (unless to 127.0.0.1)")
        return self


class AlertsConfig(StrictModel):
    """Who hears about faults, pauses and the campaign's end, and how often (docs/alerts.md)."""

    notifiers: list[
        Annotated[LogNotifier | WebhookNotifier | EmailNotifier, Field(discriminator="kind")]
    ] = Field(default_factory=list)
    dedup_window_s: float = Field(
        default=900.0, ge=0, description="an alert repeated within this many seconds is dropped"
    )
    max_per_hour: int = Field(
        default=30, ge=1, description="per notifier; the campaign's end is always sent"
    )
    timeout_s: float = Field(default=10.0, gt=0, le=600, description="to deliver one alert")

    def secret_names(self) -> dict[str, str]:
        """The environment variables the notifiers read, by the field path naming each."""
        return {
            f"alerts.notifiers.{index}.{field_name}": name
            for index, notifier in enumerate(self.notifiers)
            for field_name in _SECRET_FIELDS.values()
            if (name := getattr(notifier, field_name, None))
        }
