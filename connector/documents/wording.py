"""What a document says, in English and French: labels, the legal mentions, numbers and dates.

The legal mentions of a French business invoice (Code de commerce L441-9, L441-10, D441-5):
the late-payment penalty rate, the fixed 40 € indemnity for recovery costs, the early-payment
discount terms; reverse-charged lines say "Autoliquidation" (CGI annexe II art. 242 nonies A).
They are written in the document's language, and in its Factur-X XML as notes with their
subject codes (PMD, PMT, AAB, REG).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from billing_engine.money import MINOR_UNITS
from billing_engine.use_cases.documents import CREDIT_NOTE, DocumentSource
from connector.documents.seller import Seller

LABELS = {
    "en": {
        "invoice": "Invoice", "credit_note": "Credit note", "number": "Number", "issued_on": "Issue date",
        "due_on": "Due date", "period": "Service period", "purchase_order": "Purchase order",
        "buyer_reference": "Your reference", "corrects": "Corrects invoice", "of": "of", "bill_to": "Bill to",
        "seller": "From", "vat_id": "VAT number", "company_id": "Company number", "siren": "SIREN",
        "description": "Description", "quantity": "Qty", "unit_price": "Unit price", "discount": "Discount",
        "vat": "VAT", "amount": "Amount excl. VAT", "tax_breakdown": "VAT breakdown", "category": "Category",
        "rate": "Rate", "base": "Taxable amount", "tax": "VAT amount", "subtotal": "Subtotal",
        "net": "Total excl. VAT", "total_tax": "Total VAT", "total": "Total incl. VAT", "prepaid": "Already paid",
        "amount_due": "Amount due", "credited": "Total credited", "payment": "Payment",
        "payment_terms": "Payment terms: {days} days net, by bank transfer, due on {due}.",
        "bank": "Bank transfer to {name} — IBAN {iban} — BIC {bic}. Please quote {number}.",
        "reason": "Reason", "page": "Page {n} of {total}", "contact": "Contact",
        "no_facturx": "No Factur-X XML: {reason}.",
        "no_facturx_short": "This PDF has no Factur-X XML (see above).",
        "facturx": "This PDF carries its Factur-X (EN 16931) XML.",
    },
    "fr": {
        "invoice": "Facture", "credit_note": "Avoir", "number": "Numéro", "issued_on": "Date d'émission",
        "due_on": "Date d'échéance", "period": "Période de service", "purchase_order": "Bon de commande",
        "buyer_reference": "Votre référence", "corrects": "Rectifie la facture", "of": "du",
        "bill_to": "Facturé à", "seller": "Émetteur", "vat_id": "N° TVA", "company_id": "N° d'entreprise",
        "siren": "SIREN", "description": "Désignation", "quantity": "Qté", "unit_price": "Prix unitaire HT",
        "discount": "Remise", "vat": "TVA", "amount": "Montant HT", "tax_breakdown": "Récapitulatif TVA",
        "category": "Catégorie", "rate": "Taux", "base": "Base HT", "tax": "Montant TVA", "subtotal": "Sous-total",
        "net": "Total HT", "total_tax": "Total TVA", "total": "Total TTC", "prepaid": "Déjà réglé",
        "amount_due": "Net à payer", "credited": "Total de l'avoir", "payment": "Paiement",
        "payment_terms": "Conditions de paiement : {days} jours net, par virement, à régler le {due}.",
        "bank": "Virement à {name} — IBAN {iban} — BIC {bic}. Merci de rappeler {number}.",
        "reason": "Motif", "page": "Page {n} sur {total}", "contact": "Contact",
        "no_facturx": "Sans XML Factur-X : {reason}.",
        "no_facturx_short": "Ce PDF n'a pas de XML Factur-X (voir plus haut).",
        "facturx": "Ce PDF contient son XML Factur-X (EN 16931).",
    },
}
#: The reasons the engine gives, as a document prints them (EN 16931 keeps the engine's words).
ENGLISH_REASONS = {
    "Reverse charge": "Reverse charge: the customer accounts for the VAT (Article 196, Directive 2006/112/EC)",
}
FRENCH_REASONS = {
    "Reverse charge": "Autoliquidation : TVA due par le preneur (art. 283-2 du CGI, art. 196 de la directive "
                      "2006/112/CE)",
    "Export outside the EU": "Exonération de TVA, article 262 ter I du CGI (exportation hors UE)",
    "Not subject to VAT": "Hors champ d'application de la TVA",
    "proration credits exceed the invoice": "avoir sur le temps non utilisé après une modification de l'abonnement",
}
CATEGORY_NAMES = {
    "en": {"S": "Standard", "Z": "Zero rated", "E": "Exempt", "AE": "Reverse charge", "G": "Export",
           "O": "Not subject to VAT"},
    "fr": {"S": "Taux normal", "Z": "Taux zéro", "E": "Exonéré", "AE": "Autoliquidation", "G": "Export",
           "O": "Hors champ"},
}
COUNTRIES = {
    "en": {"FR": "France", "DE": "Germany", "ES": "Spain", "IT": "Italy", "BE": "Belgium", "NL": "Netherlands",
           "LU": "Luxembourg", "PT": "Portugal", "IE": "Ireland", "AT": "Austria", "MC": "Monaco",
           "CH": "Switzerland", "GB": "United Kingdom", "US": "United States", "CA": "Canada", "JP": "Japan",
           "KW": "Kuwait"},
    "fr": {"FR": "France", "DE": "Allemagne", "ES": "Espagne", "IT": "Italie", "BE": "Belgique", "NL": "Pays-Bas",
           "LU": "Luxembourg", "PT": "Portugal", "IE": "Irlande", "AT": "Autriche", "MC": "Monaco",
           "CH": "Suisse", "GB": "Royaume-Uni", "US": "États-Unis", "CA": "Canada", "JP": "Japon",
           "KW": "Koweït"},
}
MONTHS_FR = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
             "novembre", "décembre"]


def country_name(code: str, language: str) -> str:
    """A country's name for an address block (its ISO code when it has none here)."""
    return COUNTRIES[language].get(code, code)


def label(language: str, key: str, **values: object) -> str:
    text = LABELS[language][key]
    return text.format(**values) if values else text


def reason(language: str, text: str) -> str:
    return (FRENCH_REASONS if language == "fr" else ENGLISH_REASONS).get(text, text)


def money(value: Decimal, currency: str, language: str) -> str:
    """An amount as the engine has it, to the currency's minor unit: ``1,234.50 EUR`` / ``1 234,50 EUR``."""
    places = MINOR_UNITS[currency]
    text = f"{value.quantize(Decimal(1).scaleb(-places)):,f}"
    if language == "fr":
        text = text.replace(",", "\u202f").replace(".", ",")
    return f"{text} {currency}"


def number(value: Decimal, language: str) -> str:
    """A quantity, a unit price or a rate without trailing zeros: ``12``, ``10.04``, ``5.5``."""
    text = f"{value.normalize():f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.replace(".", ",") if language == "fr" else text


def day(on: date | None, language: str) -> str:
    if on is None:
        return ""
    if language == "fr":
        return f"{on.day} {MONTHS_FR[on.month - 1]} {on.year}"
    return on.strftime("%B %-d, %Y")


def legal_notes(source: DocumentSource, seller: Seller) -> list[tuple[str, str]]:
    """The legal mentions of a document, as ``(EN 16931 note subject code, text)`` pairs; a credit note
    carries them too (the French CTC rules require PMD, PMT and AAB on every document)."""
    fr = source.language == "fr"
    notes: list[tuple[str, str]] = []
    if seller.legal_form:
        notes.append(("REG", f"{seller.name}, {seller.legal_form}"))
    if source.kind == CREDIT_NOTE and source.reason:
        why = reason(source.language, source.reason)
        notes.append(("AAI", f"{label(source.language, 'reason')} : {why}" if fr
                      else f"{label(source.language, 'reason')}: {why}"))
    rate = number(seller.late_payment_rate, source.language)
    indemnity = money(seller.recovery_indemnity, "EUR", source.language)
    if fr:
        notes.append(("PMD", f"En cas de retard de paiement, pénalités au taux annuel de {rate} % exigibles sans "
                             "rappel à compter du lendemain de l'échéance (art. L441-10 du Code de commerce)."))
        notes.append(("PMT", f"Indemnité forfaitaire pour frais de recouvrement due en cas de retard de paiement "
                             f"par un professionnel : {indemnity} (art. D441-5 du Code de commerce)."))
        discount = ("Pas d'escompte pour paiement anticipé." if seller.no_early_payment_discount
                    else f"Escompte pour paiement anticipé : {seller.early_payment_discount}")
    else:
        notes.append(("PMD", f"Late payment: penalties at {rate} % a year are due without reminder from the day "
                             "after the due date (French Commercial Code, art. L441-10)."))
        notes.append(("PMT", f"A business paying late also owes a fixed indemnity for recovery costs of "
                             f"{indemnity} (French Commercial Code, art. D441-5)."))
        discount = ("No discount for early payment." if seller.no_early_payment_discount
                    else f"Early-payment discount: {seller.early_payment_discount}")
    notes.append(("AAB", discount))
    return notes
