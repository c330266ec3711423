"""The alerts file: where notifications go (channels) and what raises them (rules).

One YAML file (`CDP_ALERTS_FILE`, default `<state dir>/alerts.yaml`); without it, no alerts.
Secrets are never in the file: a channel names the environment variable that holds its webhook
URL, signing secret or SMTP password. Example:

    dedup_minutes: 60          # one notification per incident and channel within this window
    retries: 3                 # attempts after the first, with exponential backoff
    backoff_seconds: 2
    channels:
      ops_slack: {type: slack, url_env: CDP_ALERTS_SLACK_URL}
      ops_hook: {type: webhook, url: "https://ops.example.com/cdp", secret_env: CDP_ALERTS_WEBHOOK_SECRET}
      ops_mail: {type: email, host: smtp.example.com, port: 587, starttls: true, sender: cdp@example.com,
                 to: [ops@example.com], username: cdp, password_env: CDP_ALERTS_SMTP_PASSWORD}
    rules:
      - {rule: run_failure, channels: [ops_slack, ops_mail]}
      - {rule: check_failure, channels: [ops_slack]}
      - {rule: dead_letters, threshold: 100, channels: [ops_hook]}
      - {rule: schema_drift, channels: [ops_slack]}
      - {rule: freshness, channels: [ops_slack]}
      - {rule: finding, severity: high, channels: [ops_mail]}
"""

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cdp_resources.names import InvalidName, checked_name
from cdp_resources.settings import state_dir

RULES = ("run_failure", "check_failure", "dead_letters", "schema_drift", "freshness", "finding")


class AlertsFileError(ValueError):
    """The alerts file cannot be read or breaks a rule; the message names the place."""


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlackChannel(_Channel):
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat): JSON `{"text": ...}`."""

    type: Literal["slack"]
    url: str | None = None
    url_env: str | None = Field(default=None, description="environment variable holding the webhook URL")

    def target(self) -> str:
        return _url(self.url, self.url_env)


class WebhookChannel(_Channel):
    """A generic webhook: the alert as JSON, signed like the platform's own webhooks (`X-CDP-Signature`)."""

    type: Literal["webhook"]
    url: str | None = None
    url_env: str | None = None
    secret_env: str = Field(description="environment variable holding the HMAC secret")

    def target(self) -> str:
        return _url(self.url, self.url_env)

    def secret(self) -> bytes:
        value = os.environ.get(self.secret_env)
        if not value:
            raise AlertsFileError(f"the webhook channel's secret variable {self.secret_env} is not set")
        return value.encode()


class EmailChannel(_Channel):
    """Email over SMTP (STARTTLS and login when configured)."""

    type: Literal["email"]
    host: str
    port: int = 25
    starttls: bool = False
    sender: str
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password_env: str | None = None

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


Channel = Annotated[SlackChannel | WebhookChannel | EmailChannel, Field(discriminator="type")]


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: Literal[RULES]
    channels: list[str] = Field(min_length=1)
    threshold: int | None = Field(default=None, description="dead_letters: records per tenant, source and day")
    severity: Literal["high", "medium"] = Field(default="high", description="finding: the lowest severity sent")

    @model_validator(mode="after")
    def _threshold_for_dead_letters(self) -> "Rule":
        if self.rule == "dead_letters" and self.threshold is None:
            raise ValueError("a dead_letters rule needs a threshold")
        return self


class AlertsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dedup_minutes: float = Field(default=60, ge=0)
    retries: int = Field(default=3, ge=0)
    backoff_seconds: float = Field(default=2.0, ge=0)
    channels: dict[str, Channel] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_channels(self) -> "AlertsConfig":
        for name in self.channels:
            try:
                checked_name("channel", name)
            except InvalidName as error:
                raise ValueError(str(error)) from None
        for rule in self.rules:
            unknown = sorted(set(rule.channels) - set(self.channels))
            if unknown:
                raise ValueError(f"rule {rule.rule} names unknown channels {unknown}")
        return self

    def rules_for(self, rule: str) -> list[Rule]:
        return [r for r in self.rules if r.rule == rule]


def _url(url: str | None, url_env: str | None) -> str:
    if url_env:
        value = os.environ.get(url_env)
        if not value:
            raise AlertsFileError(f"the channel's URL variable {url_env} is not set")
        return value
    if not url:
        raise AlertsFileError("a channel needs url or url_env")
    return url


def alerts_file() -> Path:
    return Path(os.environ.get("CDP_ALERTS_FILE", state_dir() / "alerts.yaml"))


def load_alerts(path: Path | None = None) -> AlertsConfig | None:
    """The alerts file's settings; None when there is no file (alerts are off)."""
    path = path or alerts_file()
    if not path.exists():
        return None
    try:
        return AlertsConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as error:
        raise AlertsFileError(f"{path}: {error}") from None
