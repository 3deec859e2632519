"""Mail: SMTP when ``INCDB_SMTP_HOST`` is set; otherwise (the embedded mode) the message is written to the log,
where a developer finds reset and confirmation links."""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage

from store.config import get_settings

log = logging.getLogger("incdb.accounts")


def site_link(path: str) -> str:
    """An absolute link to ``path`` on this site, from the configured address (``INCDB_BASE_URL``, in
    development ``HOST``/``PORT``), never from a request's Host or X-Forwarded-Host: either can be forged, and a
    reset link on a stranger's host hands them the account."""
    return get_settings().base_url + path


def mail_goes_to_log() -> bool:
    """True in the embedded mode without mail (no ``INCDB_SMTP_HOST``, not production): only then do the pages
    tell people that a link is in the server's log. A production site without SMTP writes its mail to the log too,
    but that is a configuration mistake for its operator, not a hint for its visitors."""
    settings = get_settings()
    return not settings.smtp.host and settings.env != "production"


def send_mail(to: str, subject: str, body: str) -> None:
    """Send one plain-text mail, or write it to the log when no SMTP server is configured.

    Parameters
    ----------
    to : str
        A normalised address (``accounts.users.normalise_email``), so it cannot carry header lines.
    subject, body : str
        The subject line and the text.

    Raises
    ------
    smtplib.SMTPException, OSError
        When the configured server refuses the mail or cannot be reached.
    """
    smtp = get_settings().smtp
    host = smtp.host
    if not host:
        log.warning(
            "mail (INCDB_SMTP_HOST is not set, so it is written here instead)\nTo: %s\nSubject: %s\n\n%s",
            to,
            subject,
            body,
        )
        return
    message = EmailMessage()
    message["From"] = smtp.sender or f"INcDb <no-reply@{host}>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    port, user, password = smtp.port, smtp.user, smtp.password
    context = ssl.create_default_context()
    if port == 465:
        client = smtplib.SMTP_SSL(host, port, timeout=30, context=context)
    else:
        client = smtplib.SMTP(host, port, timeout=30)
    with client:
        if port != 465 and smtp.starttls:
            client.starttls(context=context)
        if user:
            client.login(user, password or "")
        client.send_message(message)
