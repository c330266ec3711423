"""Sending alerts: one notification per incident and channel within the dedup window, each
delivery retried with exponential backoff, and what still cannot be delivered kept in PostgreSQL
(`cdp_alerts.notifications`, status `undeliverable`) and logged, to be sent again on the next
round (`resend_undeliverable`).

Alerts carry no personal data: their text is made from asset keys, tenant ids, metric names,
counts and rule names only (never a record, an error message or an identifier), by the code that
raises them (`cdp_insights/incidents.py`).
"""

import hashlib
import json
import logging
import smtplib
import time
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage

import psycopg
import requests

from cdp_common.signatures import sign_timestamped
from cdp_insights.alerts import AlertsConfig, EmailChannel, SlackChannel, WebhookChannel

log = logging.getLogger(__name__)
SCHEMA = "cdp_alerts"
CREATE = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.notifications (
    id bigserial PRIMARY KEY,
    incident text NOT NULL,
    channel text NOT NULL,
    rule text NOT NULL,
    alert jsonb NOT NULL,
    status text NOT NULL CHECK (status IN ('delivered', 'undeliverable')),
    attempts integer NOT NULL,
    last_error text,
    first_at timestamptz NOT NULL DEFAULT now(),
    last_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS notifications_incident ON {SCHEMA}.notifications (incident, channel, last_at);
"""
TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Alert:
    """One incident to notify. `incident` identifies it: alerts with the same incident within the
    dedup window are one notification."""

    rule: str
    incident: str
    title: str
    text: str
    severity: str = "high"
    tenant: str | None = None
    facts: dict = field(default_factory=dict)


class DeliveryError(Exception):
    """A channel refused or could not be reached; the message names the channel and the cause's kind."""


def _send_slack(channel: SlackChannel, alert: Alert) -> None:
    response = requests.post(channel.target(), json={"text": f"*{alert.title}*\n{alert.text}"}, timeout=TIMEOUT_SECONDS)
    response.raise_for_status()


def _send_webhook(channel: WebhookChannel, alert: Alert) -> None:
    body = json.dumps(asdict(alert), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        # Signed at each attempt: the receiver refuses a signature older than its tolerance.
        "X-CDP-Signature": sign_timestamped(channel.secret(), body, int(time.time())),
        "Idempotency-Key": hashlib.sha256(alert.incident.encode()).hexdigest(),
    }
    response = requests.post(channel.target(), data=body, headers=headers, timeout=TIMEOUT_SECONDS)
    response.raise_for_status()


def _send_email(channel: EmailChannel, alert: Alert) -> None:
    message = EmailMessage()
    message["Subject"] = f"[CDP {alert.severity}] {alert.title}"
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.to)
    message.set_content(alert.text + "".join(f"\n{key}: {value}" for key, value in sorted(alert.facts.items())))
    with smtplib.SMTP(channel.host, channel.port, timeout=TIMEOUT_SECONDS) as smtp:
        if channel.starttls:
            smtp.starttls()
        if channel.username:
            smtp.login(channel.username, channel.password() or "")
        smtp.send_message(message)


SENDERS = {SlackChannel: _send_slack, WebhookChannel: _send_webhook, EmailChannel: _send_email}


def deliver(config: AlertsConfig, name: str, alert: Alert) -> tuple[int, str | None]:
    """Send `alert` to channel `name` with retries; (attempts, None) when delivered, else
    (attempts, the last error's kind). Only the exception's type and HTTP status are kept: an
    error's text may quote a URL holding a token."""
    channel = config.channels[name]
    error = None
    for attempt in range(config.retries + 1):
        if attempt:
            time.sleep(config.backoff_seconds * 2 ** (attempt - 1))
        try:
            SENDERS[type(channel)](channel, alert)
            return attempt + 1, None
        except requests.HTTPError as failure:
            error = f"HTTP {failure.response.status_code}"
        except (requests.RequestException, smtplib.SMTPException, OSError, ValueError) as failure:
            error = type(failure).__name__
        log.warning("alert %s to channel %s: attempt %d failed (%s)", alert.incident, name, attempt + 1, error)
    return config.retries + 1, error


class Notifier:
    """Sends alerts by the rules of an alerts file, remembering each notification in PostgreSQL."""

    def __init__(self, config: AlertsConfig, conn: psycopg.Connection):
        self.config, self.conn = config, conn
        conn.execute(CREATE)

    def _recent(self, incident: str, channel: str) -> bool:
        return (
            self.conn.execute(
                f"SELECT 1 FROM {SCHEMA}.notifications WHERE incident = %s AND channel = %s "
                "AND last_at > now() - make_interval(secs => %s)",
                (incident, channel, self.config.dedup_minutes * 60),
            ).fetchone()
            is not None
        )

    def notify(self, alert: Alert, channels: list[str]) -> dict[str, str]:
        """Send `alert` to each of `channels` not yet told of its incident within the window;
        returns channel -> delivered / undeliverable / duplicate."""
        outcome = {}
        for name in dict.fromkeys(channels):
            if self._recent(alert.incident, name):
                outcome[name] = "duplicate"
                continue
            attempts, error = deliver(self.config, name, alert)
            status = "delivered" if error is None else "undeliverable"
            if error:
                log.error(
                    "alert %s could not be delivered to %s after %d attempts (%s); kept",
                    alert.incident,
                    name,
                    attempts,
                    error,
                )
            self.conn.execute(
                f"INSERT INTO {SCHEMA}.notifications (incident, channel, rule, alert, status, attempts, last_error) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (alert.incident, name, alert.rule, json.dumps(asdict(alert)), status, attempts, error),
            )
            outcome[name] = status
        return outcome

    def resend_undeliverable(self) -> int:
        """Try the kept undeliverable notifications again; returns how many got through."""
        rows = self.conn.execute(
            f"SELECT id, channel, alert FROM {SCHEMA}.notifications WHERE status = 'undeliverable'"
        ).fetchall()
        sent = 0
        for notification, name, stored in rows:
            if name not in self.config.channels:
                continue
            attempts, error = deliver(self.config, name, Alert(**stored))
            self.conn.execute(
                f"UPDATE {SCHEMA}.notifications SET status = %s, attempts = attempts + %s, last_error = %s, "
                "last_at = now() WHERE id = %s",
                ("delivered" if error is None else "undeliverable", attempts, error, notification),
            )
            sent += error is None
        return sent

    def raise_alert(self, alert: Alert, rule_filter=None) -> dict[str, str]:
        """Send `alert` to the channels of every rule of its kind (that `rule_filter` accepts)."""
        channels = [
            c
            for rule in self.config.rules_for(alert.rule)
            if rule_filter is None or rule_filter(rule)
            for c in rule.channels
        ]
        return self.notify(alert, channels) if channels else {}
