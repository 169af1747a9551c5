"""Log lines: plain or JSON, the domain events' ids as fields, and no secret in either.

``settings.LOGGING`` sends every record through one handler with the
``RedactSecrets`` filter; ``HEARO_LOG_FORMAT`` picks ``PlainFormatter`` or
python-json-logger's formatter. Services log their events with
``event_on_commit`` and the ids as extras (``registration_id``,
``customer_id``, ``match_id``, ``counselor_id``, ``event``), which a JSON line
carries as fields and a plain line appends as ``key=value``.
"""

import logging
import re
from functools import partial

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest

REDACTED = "[redacted]"
# Configured secrets shorter than this are development placeholders ("secret"),
# and replacing every occurrence of such a word would garble ordinary lines.
MIN_SECRET_LENGTH = 8

# Credentials recognised by their shape, wherever they appear in a line.
_SHAPES = (
    # Authorization: Bearer <customer token> (any case, as clients send it)
    (re.compile(r"\b(bearer\s+)[^\s\"',;]{8,}", re.IGNORECASE), rf"\g<1>{REDACTED}"),
    # Authorization: Token <counselor API key> (DRF keys are 40 hex digits) and Basic credentials
    (re.compile(r"\b(token\s+)[0-9a-f]{40}\b", re.IGNORECASE), rf"\g<1>{REDACTED}"),
    (re.compile(r"\b(basic\s+)[A-Za-z0-9+/=]{8,}", re.IGNORECASE), rf"\g<1>{REDACTED}"),
    # JWTs: LiveKit room tokens and webhook signatures (header.payload.signature)
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # token=…, secret: …, "password": "…" in query strings, reprs and JSON
    (
        re.compile(r"""(\b[\w-]*(?:token|secret|passcode|password)["']?\s*[=:]\s*["']?)[^\s"'&,;)}\]]+""", re.I),
        rf"\g<1>{REDACTED}",
    ),
    # user:password@ in service URLs
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/\s@]*:)[^@/\s]+@", re.IGNORECASE), rf"\g<1>{REDACTED}@"),
    # a bare customer token: secrets.token_urlsafe(32) is 43 URL-safe characters
    (re.compile(r"(?<![\w-])[A-Za-z0-9_-]{43}(?![\w-])"), REDACTED),
)
# Extras whose value is a credential whatever it looks like.
_SENSITIVE_KEY = re.compile(r"token|secret|passcode|password|authorization|cookie", re.IGNORECASE)
# What every LogRecord has; anything else on a record is an extra.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def configured_secrets() -> list[str]:
    """Return the secret values in settings, longest first (a secret may contain another)."""
    values = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", []), settings.LIVEKIT_API_SECRET]
    values += [db.get("PASSWORD") or "" for db in settings.DATABASES.values()]
    return sorted({v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True)


def redact(text: str, secrets: list[str] | None = None) -> str:
    """Return ``text`` with the configured secrets and anything shaped like a credential replaced."""
    for secret in configured_secrets() if secrets is None else secrets:
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def record_extras(record: logging.LogRecord) -> dict:
    """Return the fields a caller passed with ``extra=`` (Django adds ``status_code``, ``request``)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class RedactSecrets(logging.Filter):
    """Scrub a record's message, arguments, extras and traceback before any formatter sees it.

    The safety net behind "never log a credential": the message is rendered
    with its arguments first, so a secret passed as ``%s`` is caught too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._scrub(record)
        except Exception:
            # A filter that raises would raise in the caller (logging catches
            # only emit errors); withhold the line rather than risk printing it.
            record.msg, record.args, record.exc_info, record.exc_text, record.stack_info = (
                "log line withheld: redaction failed",
                (),
                None,
                None,
                None,
            )
            for key in record_extras(record):
                setattr(record, key, REDACTED)
        return True

    def _scrub(self, record: logging.LogRecord) -> None:
        secrets = configured_secrets()
        if isinstance(record.msg, dict):  # python-json-logger lets a dict be the message
            record.msg = _scrub_value("", record.msg, secrets)
        else:
            record.msg = redact(_message(record), secrets)
        record.args = ()
        if record.exc_info:
            # Rendered here, so the formatter prints this scrubbed text instead.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, secrets)
        for key, value in record_extras(record).items():
            setattr(record, key, _scrub_value(key, value, secrets))


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a bad format string must not lose the line
        return f"{record.msg} {record.args!r}"


def _scrub_value(key: str, value, secrets: list[str]):
    if _SENSITIVE_KEY.search(key) and value:
        return REDACTED
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {str(k): _scrub_value(str(k), v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub_value(key, v, secrets) for v in value]
    if isinstance(value, HttpRequest):
        # django.request attaches the request; its repr has the query string.
        return f"{value.method} {value.path}"
    return redact(str(value), secrets)


class PlainFormatter(logging.Formatter):
    """A text line for a terminal, with the record's extras appended as ``key=value``."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extras = " ".join(f"{k}={v}" for k, v in record_extras(record).items())
        return f"{line} {extras}" if extras else line


def event_on_commit(logger: logging.Logger, message: str, *, level: int = logging.INFO, **fields) -> None:
    """Log a domain event once the current transaction commits; never for one rolled back."""
    transaction.on_commit(partial(logger.log, level, message, extra=fields))
