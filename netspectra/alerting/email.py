"""The ``smtp:`` channel: one HTML mail per batch, as Go2NetSpectra mails one summary per check.

Sent with aiosmtplib (asyncio, maintained, STARTTLS and implicit TLS). Unset ``security`` does
what Go's net/smtp does: STARTTLS when the server offers it (implicit TLS on port 465);
``starttls`` refuses to send without it; ``tls`` connects with TLS; ``none`` sends in clear (a
relay on localhost). ``tls_ca`` adds a CA to trust (a private relay's certificate). The password
comes from the file's ``${SMTP_PASSWORD}`` or ``NETSPECTRA_SMTP_PASSWORD``.
"""

from __future__ import annotations

import html
import ssl
from collections.abc import Sequence
from email.message import EmailMessage

import aiosmtplib

from netspectra.alerting.channels import ChannelError, iso, summary
from netspectra.alerting.state import Notification
from netspectra.config.models import SmtpConfig


def render(notes: Sequence[Notification]) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of one mail for ``notes``."""
    firing = sum(1 for note in notes if note.status == "firing")
    resolved = len(notes) - firing
    parts = [f"{firing} firing"] if firing else []
    if resolved:
        parts.append(f"{resolved} resolved")
    subject = f"[NetSpectra] Alert: {', '.join(parts)} ({', '.join(sorted({n.rule for n in notes}))})"
    text = "\n".join(summary(note) for note in notes)
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(cell))}</td>"
            for cell in (
                note.status.upper(),
                note.rule,
                note.severity,
                note.task,
                note.key or "(task)",
                note.metric,
                f"{note.value:g}",
                note.condition,
                iso(note.at),
            )
        )
        + "</tr>"
        for note in notes
    )
    head = "".join(
        f"<th>{name}</th>"
        for name in ("State", "Rule", "Severity", "Task", "Flow", "Metric", "Value", "Condition", "At")
    )
    body = (
        "<html><body><h2>NetSpectra alert summary</h2>"
        f"<table border='1' cellpadding='4'><tr>{head}</tr>{rows}</table></body></html>"
    )
    return subject, text, body


class EmailChannel:
    def __init__(
        self, config: SmtpConfig, *, name: str = "email", tls_context: ssl.SSLContext | None = None
    ) -> None:
        self.name = name
        self.config = config
        if tls_context is None and config.tls_ca:
            tls_context = ssl.create_default_context(cafile=config.tls_ca)
        self.tls_context = tls_context

    async def send(self, notes: Sequence[Notification]) -> None:
        config = self.config
        subject, text, body = render(notes)
        message = EmailMessage()
        message["From"] = config.sender or config.username or "netspectra@localhost"
        message["To"] = ", ".join(config.to)
        message["Subject"] = subject
        message.set_content(text)
        message.add_alternative(body, subtype="html")
        password = config.password.get_secret_value()
        try:
            await aiosmtplib.send(
                message,
                hostname=config.host,
                port=config.port,
                username=config.username or None,
                password=password if config.username else None,
                use_tls=config.mode == "tls",
                start_tls={"starttls": True, "opportunistic": None}.get(config.mode, False),
                tls_context=self.tls_context,
                timeout=config.timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise ChannelError(f"smtp {config.host}:{config.port}: {error}") from None
