"""Value types of request models: what the document says is exactly what is accepted.

- ``IsoDate``: a calendar date written ``YYYY-MM-DD`` and nothing else (pydantic alone would
  also take a number of seconds since 1970, or a date-time).
- ``Absent``: marks an optional query parameter, ``name: str | Absent = Field(None, ...)``;
  absent means ``None`` and the document shows only its type (a query string cannot carry a
  JSON null).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic.json_schema import SkipJsonSchema

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_date(value: Any) -> Any:
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DATE.fullmatch(value)):
        return value
    raise ValueError("must be a date written YYYY-MM-DD")


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Absent = SkipJsonSchema[None]
