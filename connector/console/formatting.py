"""Numbers, money and dates as the user's language writes them (Babel through Flask-Babel):
``1 950,00 €`` in French, ``€1,950.00`` in English. Amounts stay ``Decimal`` from the engine
to the page: no float is ever made. Amounts typed in a form are read the same way
(``parse_amount``): ``1 950,50`` in French, ``1,950.50`` in English, ``1950.50`` in both.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from babel.numbers import NumberFormatError, format_currency, format_decimal, parse_decimal
from flask import Flask
from flask_babel import format_date, format_datetime, get_locale
from flask_babel import gettext as _


def money(value: Any) -> str:
    """A ``Money`` (or an object with ``amount`` and ``currency``) in the user's locale, with
    at least the currency's minor digits and every digit the amount has (a unit price's)."""
    if value is None:
        return ""
    amount = value.amount
    if not isinstance(amount, Decimal):
        raise TypeError(f"money amounts are Decimal, not {type(amount).__name__}")
    return format_currency(amount, value.currency, locale=get_locale(), decimal_quantization=False)


def number(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, Decimal | int):
        raise TypeError(f"numbers are Decimal or int, not {type(value).__name__}")
    return format_decimal(value, locale=get_locale(), decimal_quantization=False)


def plain(value: Decimal) -> str:
    """An amount as a form field first shows it: the locale's decimal sign, no grouping."""
    return format_decimal(value, format="0.00####", locale=get_locale(), decimal_quantization=False)


def day(value: date | None) -> str:
    if value is None:
        return ""
    return format_date(value, format="medium")


def moment(value: datetime | None) -> str:
    if value is None:
        return ""
    return format_datetime(value, format="medium")


def parse_amount(text: str) -> Decimal:
    """An amount typed by the user, in their locale or with a plain decimal point; raises
    ``ValueError`` with a message for the user."""
    cleaned = "".join(text.split()).replace("\u202f", "").replace("\xa0", "")
    if not cleaned:
        raise ValueError(_("Enter an amount."))
    try:
        value = parse_decimal(cleaned, locale=get_locale(), strict=True)
    except NumberFormatError:
        try:
            value = Decimal(cleaned)
        except InvalidOperation:
            raise ValueError(_("%(text)s is not an amount.", text=text.strip()[:40])) from None
    if not value.is_finite():
        raise ValueError(_("%(text)s is not an amount.", text=text.strip()[:40]))
    return value


def install(app: Flask) -> None:
    app.jinja_env.filters.update(money=money, number=number, day=day, moment=moment)
