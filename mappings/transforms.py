"""The closed registry of named transforms a mapping file may use (no ``eval``, no code).

Each transform turns one value into one exact value (``Decimal``, ``date``, ``str``, ``bool``,
``int``, a list of codes, a list of tiers) or rejects it with a reason. The caller names
the field: ``Quantity: 'abc' is not a decimal number``. Each transform declares the
Salesforce field types it can read (inbound) and write (outbound), which
``check_specs`` compares with the org's describe, and the parameters it takes.

Binary floats are refused everywhere: Salesforce JSON is parsed with ``parse_float=Decimal``,
so a float here means someone lost exactness on the way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ValueRejected(Exception):
    """A transform's verdict on one value; the caller turns it into a ``MappingError``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# Salesforce describe field types, grouped.
TEXT_TYPES = frozenset({"string", "textarea", "picklist", "combobox", "email", "phone", "url", "encryptedstring"})
ID_TYPES = frozenset({"id", "reference"})
NUMBER_TYPES = frozenset({"currency", "double", "percent", "int", "long"})
ANY_TYPE = frozenset({"*"})  # any field type
NOT_ALLOWED: frozenset[str] = frozenset()  # the transform can't be used in this direction


@dataclass(frozen=True)
class Param:
    kind: str  # decimal | integer | boolean | text | map | scalar
    doc: str
    required: bool = False


ConvertFn = Callable[[Any, Mapping[str, Any], ZoneInfo], Any]


@dataclass(frozen=True)
class Transform:
    name: str
    summary: str
    convert: ConvertFn
    reads: frozenset[str]  # Salesforce field types accepted inbound (ANY_TYPE, or NOT_ALLOWED)
    writes: frozenset[str]  # Salesforce field types it can fill outbound
    params: Mapping[str, Param] = field(default_factory=dict)
    uses_source: bool = True  # False: the value does not come from a field (constant, template)

    def accepts_type(self, sf_type: str, outbound: bool) -> bool:
        allowed = self.writes if outbound else self.reads
        return allowed == ANY_TYPE or sf_type in allowed


# --- shared parsers --------------------------------------------------------------------

_DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?")
_ID_TEXT = re.compile(r"[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?")
_CURRENCY_TEXT = re.compile(r"[A-Z]{3}")
_ID_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
FLOAT_REASON = "is a binary float; exact values must arrive as Decimal or text"


def reject_float(value: Any) -> None:
    if isinstance(value, float):
        raise ValueRejected(FLOAT_REASON)


def parse_decimal(value: Any) -> Decimal:
    reject_float(value)
    if isinstance(value, bool):
        raise ValueRejected("is not a decimal number")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value.strip()):
        number = Decimal(value.strip())
    else:
        raise ValueRejected("is not a decimal number")
    if not number.is_finite():
        raise ValueRejected("is not a finite decimal number")
    return number


def _check_bounds(number: Decimal, params: Mapping[str, Any]) -> None:
    low, high = params.get("min"), params.get("max")
    if low is not None and number < Decimal(low):
        raise ValueRejected(f"is below the minimum {low}")
    if high is not None and number > Decimal(high):
        raise ValueRejected(f"is above the maximum {high}")


def _text(value: Any) -> str:
    reject_float(value)
    if not isinstance(value, str):
        raise ValueRejected("is not text")
    return value.strip()


def parse_datetime(value: Any) -> datetime:
    """A Salesforce datetime (``2026-01-31T23:30:00.000+0000``, ``...Z``), an aware ``datetime``,
    or epoch milliseconds (CDC over Pub/Sub) → an aware UTC ``datetime``."""
    reject_float(value)
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int) and not isinstance(value, bool):
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)
    elif isinstance(value, str) and _DATETIME_TEXT.fullmatch(value.strip()):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueRejected("is not a valid datetime") from None
    elif isinstance(value, date | str) and _DATE_TEXT.fullmatch(str(value).strip()):
        raise ValueRejected("is a date, not a datetime; use the date transform")
    else:
        raise ValueRejected("is not a datetime like 2026-01-31T23:30:00.000+0000")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueRejected("has no timezone offset")
    return moment.astimezone(UTC)


def to_id18(id15: str) -> str:
    """Salesforce's 15 → 18 character id: the suffix encodes which letters are upper case."""
    suffix = ""
    for i in range(3):
        bits = 0
        for j, char in enumerate(id15[i * 5 : (i + 1) * 5]):
            if "A" <= char <= "Z":
                bits |= 1 << j
        suffix += _ID_SUFFIX_CHARS[bits]
    return id15 + suffix


# --- the transforms --------------------------------------------------------------------


def _string(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> str:
    text = _text(value)
    limit = params.get("max_length")
    if limit is not None and len(text) > limit:
        if params.get("truncate"):
            return text[: limit - 1] + "…"
        raise ValueRejected(f"is longer than {limit} characters ({len(text)})")
    return text


def _base64(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> str:
    import base64

    if not isinstance(value, bytes | bytearray):
        raise ValueRejected(f"is {type(value).__name__} text, not the bytes of a file")
    return base64.b64encode(bytes(value)).decode("ascii")


def _decimal(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> Decimal:
    number = parse_decimal(value)
    places = params.get("places")
    if places is not None:
        try:
            exact = number == number.quantize(Decimal(1).scaleb(-places))
        except InvalidOperation:
            exact = False
        if not exact:
            raise ValueRejected(f"has more than {places} decimal places")
    _check_bounds(number, params)
    return number


def _integer(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        whole = value
    else:
        try:
            number = parse_decimal(value)
        except ValueRejected as rejected:
            if rejected.reason == FLOAT_REASON:
                raise
            raise ValueRejected("is not a whole number") from None
        if number != number.to_integral_value():
            raise ValueRejected("is not a whole number")
        whole = int(number)
    _check_bounds(Decimal(whole), params)
    return whole


def _boolean(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    reject_float(value)
    raise ValueRejected("is not true or false")


def _date(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> date:
    reject_float(value)
    if isinstance(value, datetime):
        raise ValueRejected("is a datetime, not a date; use the datetime_to_date transform")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _DATE_TEXT.fullmatch(text):
            try:
                return date.fromisoformat(text)
            except ValueError:
                raise ValueRejected("is not a valid calendar date") from None
        if _DATETIME_TEXT.fullmatch(text):
            raise ValueRejected("is a datetime, not a date (YYYY-MM-DD); use the datetime_to_date transform")
    raise ValueRejected("is not a date (YYYY-MM-DD)")


def _datetime(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> datetime:
    return parse_datetime(value)


def _datetime_to_date(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> date:
    return parse_datetime(value).astimezone(tz).date()


def _percent(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> Decimal:
    number = parse_decimal(value)
    if not Decimal(0) <= number <= Decimal(100):
        raise ValueRejected("is not a percentage between 0 and 100")
    return number


def _picklist_map(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> Any:
    reject_float(value)
    mapping = params["map"]
    key = value.strip() if isinstance(value, str) else value
    if not isinstance(key, str) or key not in mapping:
        known = ", ".join(repr(k) for k in mapping)
        raise ValueRejected(f"is not one of the mapped values: {known}")
    return mapping[key]


def _passthrough(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> Any:
    reject_float(value)
    return value.strip() if isinstance(value, str) else value


def _constant(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> Any:
    return params["value"]


def _currency_code(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> str:
    code = _text(value).upper()
    if not _CURRENCY_TEXT.fullmatch(code):
        raise ValueRejected("is not a 3-letter ISO 4217 currency code")
    return code


def _timezone(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> str:
    name = _text(value)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueRejected("is not an IANA time zone (e.g. Europe/Paris)") from None
    return name


_TIER_KEYS = ("up_to", "unit_price", "flat_fee")


def _reject_constant(name: str) -> Any:
    raise ValueRejected(f"is not valid JSON ({name} is not a number)")


def _tier_number(tier_no: int, key: str, raw: Any) -> Decimal:
    try:
        number = parse_decimal(raw)
    except ValueRejected as rejected:
        raise ValueRejected(f"tier {tier_no}: {key} {raw!r} {rejected.reason}") from None
    if number < 0:
        raise ValueRejected(f"tier {tier_no}: {key} {number} is negative")
    return number


def _json_tiers(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> list[dict[str, Decimal | None]]:
    reject_float(value)
    if isinstance(value, str):
        try:
            value = json.loads(value, parse_float=Decimal, parse_int=Decimal, parse_constant=_reject_constant)
        except json.JSONDecodeError as error:
            raise ValueRejected(f"is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})") from None
    if not isinstance(value, list) or not value:
        raise ValueRejected('is not a JSON list of tiers like [{"up_to": 5, "unit_price": "200"}, ...]')
    tiers: list[dict[str, Decimal | None]] = []
    previous: Decimal | None = None
    for index, raw in enumerate(value):
        no = index + 1
        if not isinstance(raw, dict):
            raise ValueRejected(f"tier {no} is not an object with up_to and unit_price")
        unknown = sorted(set(raw) - set(_TIER_KEYS))
        if unknown:
            raise ValueRejected(f"tier {no}: unknown key {unknown[0]!r} (known: up_to, unit_price, flat_fee)")
        if "unit_price" not in raw or raw["unit_price"] is None:
            raise ValueRejected(f"tier {no}: unit_price is missing")
        if "up_to" not in raw:
            raise ValueRejected(f"tier {no}: up_to is missing (null for the last tier)")
        up_to = None if raw["up_to"] is None else _tier_number(no, "up_to", raw["up_to"])
        last = index == len(value) - 1
        if up_to is None and not last:
            raise ValueRejected(f"tier {no}: only the last tier may have up_to null")
        if up_to is not None and last:
            raise ValueRejected(f"tier {no}: the last tier must have up_to null")
        if up_to is not None and previous is not None and up_to <= previous:
            raise ValueRejected(f"tier {no}: up_to {up_to} is not above the previous tier's {previous}")
        if up_to is not None and up_to <= 0:
            raise ValueRejected(f"tier {no}: up_to {up_to} is not positive")
        flat_fee = raw.get("flat_fee")
        tiers.append({
            "up_to": up_to,
            "unit_price": _tier_number(no, "unit_price", raw["unit_price"]),
            "flat_fee": Decimal(0) if flat_fee is None else _tier_number(no, "flat_fee", flat_fee),
        })
        previous = up_to
    return tiers


def _split_codes(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> list[str]:
    text = _text(value)
    codes: list[str] = []
    for part in text.split(params.get("separator") or ","):
        code = part.strip()
        if code and code not in codes:
            codes.append(code)
    return codes


def _id18(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> str:
    text = _text(value)
    if not _ID_TEXT.fullmatch(text):
        raise ValueRejected("is not a Salesforce id (15 or 18 letters and digits)")
    full = to_id18(text[:15])
    if len(text) == 18 and text != full:
        raise ValueRejected(f"has a wrong 18-character suffix (expected {full[15:]!r})")
    return full


def _template(value: Any, params: Mapping[str, Any], tz: ZoneInfo) -> Any:
    return _string(value, params, tz)  # the caller renders the template; this checks the length


_LENGTH = {
    "max_length": Param("integer", "reject text longer than this many characters"),
    "truncate": Param("boolean", "cut text longer than max_length (ending it with …) instead of rejecting it"),
}
_BOUNDS = {
    "min": Param("decimal", "reject values below this"),
    "max": Param("decimal", "reject values above this"),
}
_VALUE = {"value": Param("scalar", "the value to use", required=True)}

_ALL = [
    Transform("string", "Text, trimmed; empty text counts as empty.", _string,
              TEXT_TYPES | ID_TYPES | {"multipicklist"}, TEXT_TYPES, _LENGTH),
    Transform("decimal", "An exact Decimal from a number or numeric text; floats and garbage are rejected.",
              _decimal, NUMBER_TYPES, NUMBER_TYPES,
              {**_BOUNDS, "places": Param("integer", "reject values with more decimal places")}),
    Transform("integer", "A whole number (42, '42', 42.0 as Decimal).", _integer,
              frozenset({"int", "long", "double"}), frozenset({"int", "long", "double"}), _BOUNDS),
    Transform("boolean", "true/false (also the text 'true'/'false').", _boolean,
              frozenset({"boolean"}), frozenset({"boolean"})),
    Transform("date", "A calendar date, YYYY-MM-DD.", _date, frozenset({"date"}), frozenset({"date"})),
    Transform("datetime_to_date", "A Salesforce datetime converted to the customer's time zone "
              "(else the org's), then its date.", _datetime_to_date, frozenset({"datetime"}), NOT_ALLOWED),
    Transform("datetime", "A timezone-aware datetime, in UTC.", _datetime,
              frozenset({"datetime"}), frozenset({"datetime"})),
    Transform("percent", "A percentage 0–100 as a Decimal (20 means 20 %).", _percent,
              frozenset({"percent", "double", "int"}), frozenset({"percent", "double"})),
    Transform("picklist_map", "Translates each picklist value with `map`; an unmapped value is an error.",
              _picklist_map, frozenset({"picklist", "combobox", "string"}),
              frozenset({"picklist", "combobox", "string", "textarea"}),
              {"map": Param("map", "{Salesforce value: engine value} inbound, "
                                   "{engine value: Salesforce value} outbound", required=True)}),
    Transform("default", "The value as received; `value` when empty.", _passthrough, ANY_TYPE, ANY_TYPE,
              {"value": Param("scalar", "the value used when the field is empty", required=True)}),
    Transform("constant", "Always `value`; reads no field.", _constant, ANY_TYPE, ANY_TYPE, _VALUE,
              uses_source=False),
    Transform("currency_code", "An ISO 4217 code, 3 letters, upper-cased.", _currency_code,
              frozenset({"picklist", "combobox", "string"}), frozenset({"picklist", "combobox", "string"})),
    Transform("timezone", "An IANA time zone name (Europe/Paris).", _timezone,
              frozenset({"string", "picklist", "combobox"}), frozenset({"string", "picklist", "combobox"})),
    Transform("json_tiers", "A JSON list of price tiers: up_to (null on the last), unit_price, flat_fee; "
              "numbers become Decimal.", _json_tiers, frozenset({"textarea", "string"}), NOT_ALLOWED),
    Transform("split_codes", "A separated list of codes (comma by default), trimmed, empties and repeats "
              "dropped.", _split_codes, frozenset({"string", "textarea", "multipicklist"}), NOT_ALLOWED,
              {"separator": Param("text", "the separator (default ',')")}),
    Transform("id18", "A Salesforce id in its 18-character form (15-character ids are extended).", _id18,
              ID_TYPES | {"string"}, ID_TYPES | {"string"}),
    Transform("template", "Text built from other fields: `template: 'DRAFT-{id}'`; when one of them is "
              "empty, `otherwise` is used instead.", _template, ANY_TYPE, frozenset({"string", "textarea"}),
              {"template": Param("text", "the text, with {field} placeholders", required=True),
               "otherwise": Param("text", "used when a placeholder of `template` is empty"), **_LENGTH},
              uses_source=False),
    Transform("base64", "A file's bytes as base64 text (a blob field such as ContentVersion.VersionData).",
              _base64, NOT_ALLOWED, frozenset({"base64"})),
]

TRANSFORMS: Mapping[str, Transform] = {t.name: t for t in _ALL}

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def get_transform(name: str) -> Transform:
    return TRANSFORMS[name]


def find_transform(name: Any) -> Transform | None:
    return TRANSFORMS.get(name) if isinstance(name, str) else None


def template_placeholders(text: str) -> list[str]:
    return PLACEHOLDER.findall(text)


def render_template(text: str, lookup: Callable[[str], Any]) -> str | None:
    """Fill ``{name}`` placeholders; ``None`` when one of them is empty. No other syntax exists."""
    values: dict[str, str] = {}
    for name in template_placeholders(text):
        value = lookup(name)
        reject_float(value)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        values[name] = value.isoformat() if isinstance(value, date) else str(value)
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
