"""The first invoice's lines as an open deal's preview writes them on the Opportunity (JSON)."""

from __future__ import annotations

import json
from decimal import Decimal

from billing_engine.use_cases.preview import DealPreview, PreviewLine
from connector.sync import preview
from connector.sync.preview import preview_lines


def deal(*lines: PreviewLine, currency: str = "EUR") -> DealPreview:
    subtotal = sum((ln.amount for ln in lines), Decimal(0))
    return DealPreview(currency=currency, lines=lines, subtotal=subtotal, discount=Decimal(0), tax=Decimal(0),
                       total=subtotal, tax_percent=Decimal(0), tax_reason="", credit_note_total=None,
                       mrr_before=Decimal(0), mrr_after=subtotal, deal_mrr=subtotal, deal_arr=subtotal * 12)


def line(description: str, quantity: str, amount: str, explanation: str) -> PreviewLine:
    return PreviewLine("recurring", "X", description, explanation, Decimal(quantity), Decimal(amount),
                       Decimal(amount))


def test_amounts_and_quantities_are_decimal_strings_as_the_engine_rounded_them():
    text, left_out = preview_lines(deal(
        line("Seats", "12.50", "1000", "Seats 12.5 × 80"),
        line("Credit for unused seats", "-2.00", "-150", "Seats -2 × 75, prorated"), currency="JPY"))
    assert left_out == 0
    assert json.loads(text) == [
        {"description": "Seats", "quantity": "12.5", "amount": "1000", "currency": "JPY",
         "explanation": "Seats 12.5 × 80"},
        {"description": "Credit for unused seats", "quantity": "-2", "amount": "-150", "currency": "JPY",
         "explanation": "Seats -2 × 75, prorated"},
    ]
    assert '"amount":"1000"' in text  # never a JSON number


def test_the_length_counts_utf16_code_units_and_drops_whole_lines(monkeypatch):
    one = line("Licences", "12", "1950.00", "Licences 12 × graduated: 5 × 200 + 5 × 150 + 2 × 100")
    two = line("Support 🛟", "1", "195.00", "Premium support 10 % of 1950 (Licences)")
    full, _ = preview_lines(deal(one, two))
    monkeypatch.setattr(preview, "LINES_LENGTH", len(full))  # the emoji counts twice in UTF-16: no room
    text, left_out = preview_lines(deal(one, two))
    assert left_out == 1
    assert [x["description"] for x in json.loads(text)] == ["Licences"]

    monkeypatch.setattr(preview, "LINES_LENGTH", 20)  # not even the first line fits
    assert preview_lines(deal(one, two)) == ("[]", 2)
