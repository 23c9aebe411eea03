"""The SEPA direct-debit file (pain.008), written with ``sepaxml`` and validated against the
ISO 20022 XSD it ships (docs/payments.md).

``creditor_problems`` names each creditor setting an export needs and lacks; ``render_pain008``
turns the engine's export plan into the file. sepaxml draws a random message id, a random id
per batch and the local time of creation: they are replaced by the plan's (the message id the
export is recorded under, one batch id per sequence type, the export's time), so the file says
what the engine recorded, and the result is validated again.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # only ever parses the document sepaxml itself just wrote
from decimal import Decimal
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from connector.settings import SettingsError

if TYPE_CHECKING:
    from billing_engine.use_cases.direct_debits import ExportPlan
    from connector.settings import Settings

#: What each creditor setting is, for the line naming it when it is missing.
CREDITOR_SETTINGS = {
    "SEPA_CREDITOR_NAME": "the creditor's name",
    "SEPA_CREDITOR_IBAN": "the account the debits are collected to",
    "SEPA_CREDITOR_ID": "the SEPA creditor identifier (ICS) your bank gave you",
}


class SepaFileError(Exception):
    """The file does not validate against the pain.008 XSD (a value the schema refuses)."""


def creditor_problems(settings: Settings) -> list[str]:
    """One line per creditor setting a direct-debit export needs and lacks."""
    problems = [f"{name}: required to export SEPA direct debits ({what})"
                for name, what in CREDITOR_SETTINGS.items() if not getattr(settings, name.lower())]
    if settings.sepa_schema == "pain.008.001.02" and not settings.sepa_creditor_bic:
        problems.append("SEPA_CREDITOR_BIC: required by pain.008.001.02 (the BIC of the creditor's bank)")
    if settings.sepa_creditor_name and len(settings.sepa_creditor_name) > 70:
        problems.append("SEPA_CREDITOR_NAME: at most 70 characters in a SEPA file")
    return problems


def require_creditor(settings: Settings) -> None:
    problems = creditor_problems(settings)
    if problems:
        raise SettingsError(problems)


def cents(amount: Decimal) -> int:
    """Euros as whole cents (sepaxml's unit): exact, never through a float."""
    value = amount * 100
    if value != value.to_integral_value():
        raise ValueError(f"{amount} EUR is not a whole number of cents")
    return int(value)


def render_pain008(plan: ExportPlan, settings: Settings) -> str:
    """The pain.008 document of ``plan``, validated against its XSD; raises ``SepaFileError``."""
    from sepaxml import SepaDD
    from sepaxml.validation import ValidationError, try_valid_xml

    config = {"name": settings.sepa_creditor_name, "IBAN": settings.sepa_creditor_iban, "batch": True,
              "creditor_id": settings.sepa_creditor_id, "currency": "EUR",
              "instrument": settings.sepa_instrument.upper()}
    if settings.sepa_creditor_bic:
        config["BIC"] = settings.sepa_creditor_bic
    schema = settings.sepa_schema
    sepa = SepaDD(config, schema=schema, clean=True)
    for line in plan.lines:
        payment = {"name": line.debtor_name, "IBAN": line.iban, "amount": cents(line.amount),
                   "type": line.sequence_type, "collection_date": plan.collect_on,
                   "mandate_id": line.mandate_reference, "mandate_date": line.mandate_signed_on,
                   "description": line.remittance, "endtoend_id": line.end_to_end_id}
        if line.bic:
            payment["BIC"] = line.bic
        sepa.add_payment(payment)
    raw = sepa.export(validate=False)
    namespace = f"urn:iso:std:iso:20022:tech:xsd:{schema}"
    ET.register_namespace("", namespace)
    root = ET.fromstring(raw)
    ns = {"p": namespace}
    header = root.find("p:CstmrDrctDbtInitn/p:GrpHdr", ns)
    header.find("p:MsgId", ns).text = plan.message_id  # type: ignore[union-attr]
    local = plan.created_at.astimezone(ZoneInfo(settings.billsync_timezone))
    header.find("p:CreDtTm", ns).text = local.strftime("%Y-%m-%dT%H:%M:%S")  # type: ignore[union-attr]
    for info in root.findall("p:CstmrDrctDbtInitn/p:PmtInf", ns):
        sequence = info.find("p:PmtTpInf/p:SeqTp", ns).text  # type: ignore[union-attr]
        info.find("p:PmtInfId", ns).text = plan.batch_ids[sequence]  # type: ignore[union-attr,index]
    document = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")
    try:
        try_valid_xml(document, schema)
    except ValidationError as exc:
        raise SepaFileError(f"the {schema} file does not validate against its XSD: {exc.__cause__ or exc}") from None
    return document.decode("utf-8")
