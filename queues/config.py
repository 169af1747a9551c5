"""A queue's configuration as staff write it: the public body <-> the model's fields (pure, no database).

The REST API (``/api/admin/queues``) and the Django admin both validate
through ``queue_config_clean``, so a setting that one refuses the other
refuses too. Checks that need other rows (an overflow target exists, no
overflow cycle) are the service's.
"""

import re
from urllib.parse import urlsplit

from common.errors import DomainError
from queues import hours

SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})?")
PHONE = re.compile(r"\+?[0-9][0-9 ()-]{1,30}")
# The body's names, in the order they are shown; each maps to one model field.
FIELDS = {
    "queueId": "queue_id",
    "name": None,  # -> name_ko, name_en
    "languages": "languages",
    "timezone": "timezone",
    "hours": "hours",
    "closedDates": "closed_dates",
    "maxWaiting": "max_waiting",
    "overflowQueueId": "overflow_queue_id",
    "overflowAfterSeconds": "overflow_after_seconds",
    "urgentHeadStartSeconds": "urgent_head_start_seconds",
    "wrapUpSeconds": "wrap_up_seconds",
    "alternatives": "alternatives",
}
# Longest settings that still make sense: a day of head start, an hour of wrap-up.
MAX_SECONDS = {"urgentHeadStartSeconds": 86_400, "wrapUpSeconds": 3_600, "overflowAfterSeconds": 86_400}


class ConfigError(DomainError):
    """One bad setting; ``field`` names it in the body's terms."""

    code = "invalid_queue"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}", extra={"field": field})
        self.field = field


def _text_pair(field: str, value: object, *, required: bool) -> dict[str, str]:
    if not isinstance(value, dict) or not set(value) <= {"ko", "en"}:
        raise ConfigError(field, "expected {ko, en}")
    texts = {k: v.strip() for k, v in value.items() if isinstance(v, str) and v.strip()}
    if len(texts) != len(value) or (required and not texts):
        raise ConfigError(field, "ko and en must be non-empty strings (give at least one)")
    if any(len(v) > 80 for v in texts.values()):
        raise ConfigError(field, "at most 80 characters")
    # One language given: it stands in for the other rather than leaving a blank.
    return {"ko": texts.get("ko") or texts.get("en", ""), "en": texts.get("en") or texts.get("ko", "")}


def _languages(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ConfigError("languages", "expected a non-empty list of language codes")
    if not all(isinstance(code, str) and LANGUAGE.fullmatch(code) for code in value):
        raise ConfigError("languages", "language codes look like ko, en or zh-Hant")
    if len(set(value)) != len(value):
        raise ConfigError("languages", "a language is listed twice")
    return list(value)


def _seconds(field: str, value: object, *, nullable: bool, minimum: int = 0) -> int | None:
    if value is None and nullable:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(field, f"expected a whole number >= {minimum}" + (" or null" if nullable else ""))
    limit = MAX_SECONDS.get(field)
    if limit is not None and value > limit:
        raise ConfigError(field, f"at most {limit}")
    return value


def _alternatives(value: object) -> list[dict]:
    if not isinstance(value, list) or len(value) > 10:
        raise ConfigError("alternatives", "expected a list of at most 10 {label: {ko, en}, phone?, url?}")
    clean = []
    for index, entry in enumerate(value):
        field = f"alternatives[{index}]"
        if not isinstance(entry, dict) or "label" not in entry or not set(entry) <= {"label", "phone", "url"}:
            raise ConfigError(field, "expected {label: {ko, en}, phone?, url?}")
        item = {"label": _text_pair(f"{field}.label", entry["label"], required=True)}
        phone, url = entry.get("phone"), entry.get("url")
        if phone is None and url is None:
            raise ConfigError(field, "give a phone number or a URL to turn to")
        if phone is not None:
            if not isinstance(phone, str) or not PHONE.fullmatch(phone.strip()):
                raise ConfigError(f"{field}.phone", "expected a phone number such as 109 or +82 2-1234-5678")
            item["phone"] = phone.strip()
        if url is not None:
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is None or parts.scheme not in ("https", "http") or not parts.netloc or len(url) > 300:
                raise ConfigError(f"{field}.url", "expected an http(s) URL")
            item["url"] = url
        clean.append(item)
    return clean


def queue_config_clean(body: object, *, partial: bool) -> dict:
    """Return model field values for the settings in ``body``, or raise ConfigError.

    ``partial`` (a PATCH): only the settings given are returned; otherwise
    ``queueId`` and ``name`` are required and the rest take their defaults.
    """
    if not isinstance(body, dict):
        raise ConfigError("body", "expected a JSON object")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise ConfigError(unknown[0], "unknown field")
    if not partial:
        for required in ("queueId", "name"):
            if required not in body:
                raise ConfigError(required, "required")
    fields: dict = {}
    if "queueId" in body:
        queue_id = body["queueId"]
        if not isinstance(queue_id, str) or not SLUG.fullmatch(queue_id):
            raise ConfigError("queueId", "a slug: lowercase letters, digits, - and _, at most 40")
        fields["queue_id"] = queue_id
    if "name" in body:
        name = _text_pair("name", body["name"], required=True)
        fields["name_ko"], fields["name_en"] = name["ko"], name["en"]
    if "languages" in body:
        fields["languages"] = _languages(body["languages"])
    if "timezone" in body:
        if not isinstance(body["timezone"], str):
            raise ConfigError("timezone", "expected an IANA name such as Asia/Seoul")
        try:
            hours.zone(body["timezone"])
        except hours.HoursError as exc:
            raise ConfigError("timezone", str(exc)) from None
        fields["timezone"] = body["timezone"]
    # Each checked on its own, so the error names the setting that failed (not a guess from its text).
    for name, field, validate in (
        ("hours", "hours", hours.validate_hours),
        ("closedDates", "closed_dates", hours.validate_closed_dates),
    ):
        if name in body:
            try:
                fields[field] = validate(body[name])
            except hours.HoursError as exc:
                raise ConfigError(name, str(exc)) from None
    if "maxWaiting" in body:
        fields["max_waiting"] = _seconds("maxWaiting", body["maxWaiting"], nullable=True, minimum=1)
    if "overflowQueueId" in body:
        target = body["overflowQueueId"]
        if target is not None and (not isinstance(target, str) or not SLUG.fullmatch(target)):
            raise ConfigError("overflowQueueId", "a queueId or null")
        fields["overflow_queue_id"] = target
    if "overflowAfterSeconds" in body:
        fields["overflow_after_seconds"] = _seconds(
            "overflowAfterSeconds", body["overflowAfterSeconds"], nullable=True, minimum=1
        )
    for name in ("urgentHeadStartSeconds", "wrapUpSeconds"):
        if name in body:
            fields[FIELDS[name]] = _seconds(name, body[name], nullable=False)
    if "alternatives" in body:
        fields["alternatives"] = _alternatives(body["alternatives"])
    return fields


def queue_config_check(values: dict) -> None:
    """Check the settings that hang together, on the queue's values after the change."""
    if (values.get("overflow_queue_id") is None) != (values.get("overflow_after_seconds") is None):
        raise ConfigError("overflowQueueId", "overflowQueueId and overflowAfterSeconds are set together")
    if values.get("overflow_queue_id") is not None and values["overflow_queue_id"] == values.get("queue_id"):
        raise ConfigError("overflowQueueId", "a queue cannot overflow into itself")
