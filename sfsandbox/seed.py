"""Deterministic seed data (``random.Random(seed)``; no clock involved in the values).

- ``small`` (the demo): 20 accounts in EUR, USD and JPY, the catalogue of products
  for every pricing model with standard price book entries in each currency, 30
  opportunities of which 12 are Closed Won with a synced quote and quote lines (some
  with a Discount %, some with a contract UnitPrice below list).
- ``large`` (benchmarks): 100,000 accounts and proportionally many opportunities,
  quotes and lines, built through a fast path that skips per-record checks.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sfsandbox.org import Caller, Org, format_datetime

CURRENCIES = ("EUR", "USD", "JPY")
# Per-currency multiplier and rounding scale for list prices derived from EUR.
FX = {"EUR": (Decimal("1"), 2), "USD": (Decimal("1.10"), 2), "JPY": (Decimal("160"), 0)}


def _tiers(*rows: tuple[int | None, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"up_to": up_to, "unit_price": price} for up_to, price in rows]
    out[-1]["flat_fee"] = "0"
    return out


# code, name, family, model, charge type, interval, EUR unit price, extra Product2 fields, tiers, overage.
# The self-service plans (Self_Service__c, listed at /buy): the Licences family, e.g. 12 LIC seats
# cost 5 × 200 + 5 × 150 + 2 × 100 = 1,950.00 EUR per month before tax.
CATALOGUE: list[tuple[str, str, str, str, str, str | None, str, dict, list | None, str | None]] = [
    ("LIC", "Licences", "Licences", "graduated", "recurring", "month", "0",
     {"Unit_Of_Measure__c": "licence", "Self_Service__c": True}, _tiers((5, "200"), (10, "150"), (None, "100")), None),
    ("LIC-Y", "Licences (yearly)", "Licences", "graduated", "recurring", "year", "0",
     {"Unit_Of_Measure__c": "licence", "Self_Service__c": True}, _tiers((5, "2000"), (10, "1500"), (None, "1000")), None),
    ("DATA", "Data plan", "Usage", "allowance", "usage", "month", "10",
     {"Included_Units__c": "40", "Unit_Of_Measure__c": "GB"}, None, "0.50"),
    ("PLATFORM", "Platform fee", "Platform", "flat", "recurring", "month", "500", {}, None, None),
    ("PLATFORM-Y", "Platform fee (yearly)", "Platform", "flat", "recurring", "year", "5000", {}, None, None),
    ("SEATS", "Seats", "Licences", "per_unit", "recurring", "month", "25",
     {"Unit_Of_Measure__c": "seat", "Self_Service__c": True}, None, None),
    ("API-1000", "API calls (package of 1,000)", "Usage", "package", "usage", "month", "5",
     {"Package_Size__c": "1000", "Unit_Of_Measure__c": "API call"}, None, None),
    ("STORAGE", "Storage", "Usage", "volume", "usage", "month", "0", {"Unit_Of_Measure__c": "GB"},
     _tiers((100, "0.10"), (1000, "0.08"), (None, "0.05")), None),
    ("SUPPORT", "Premium support", "Support", "percent_of", "recurring", "month", "0",
     {"Percent__c": "10", "Percent_Of_Products__c": "LIC,LIC-Y"}, None, None),
    ("ONBOARD", "Onboarding", "Services", "flat", "one_time", None, "1500", {}, None, None),
]

COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka", "Tyrell", "Cyberdyne",
             "Soylent", "Gringotts", "Aperture", "Vandelay", "Pied Piper", "Oscorp", "Monarch", "Nakatomi",
             "Massive Dynamic", "Dunder Mifflin"]
PLACES = {
    "EUR": [("Paris", "75002", "France", "Europe/Paris", "20"), ("Berlin", "10115", "Germany", "Europe/Berlin", "19"),
            ("Madrid", "28013", "Spain", "Europe/Madrid", "21")],
    "USD": [("New York", "10001", "United States", "America/New_York", "0"),
            ("Austin", "73301", "United States", "America/Chicago", "8.25")],
    "JPY": [("Tokyo", "100-0001", "Japan", "Asia/Tokyo", "10")],
}
SUFFIXES = ["Corp", "GmbH", "SA", "Ltd", "KK", "Inc"]


def _price(eur: str, currency: str) -> Decimal:
    rate, scale = FX[currency]
    return (Decimal(eur) * rate).quantize(Decimal(1).scaleb(-scale))


def _tiers_in(tiers: list[dict], currency: str) -> str:
    import json

    return json.dumps([{**t, "unit_price": str(_price(t["unit_price"], currency)),
                        **({"flat_fee": "0"} if "flat_fee" in t else {})} for t in tiers])


def seed_org(org: Org, data: str, seed: int = 0) -> dict[str, int]:
    if data == "none":
        return {}
    if data == "small":
        return _small(org, random.Random(seed))
    if data == "large":
        return _large(org, random.Random(seed))
    raise ValueError(f"unknown data set {data!r} (none, small, large)")


def create_catalogue(org: Org, caller: Caller) -> dict[tuple[str, str], dict]:
    """Products and standard price book entries; returns (code, currency) -> entry record."""
    book = org.standard_pricebook_id()
    product_obj, entry_obj = org.object("Product2"), org.object("PricebookEntry")
    entries: dict[tuple[str, str], dict] = {}
    for code, name, family, model, charge, interval, unit, extra, tiers, overage in CATALOGUE:
        product_id = org.create(product_obj, {
            "Name": name, "ProductCode": code, "Family": family, "IsActive": True, "Pricing_Model__c": model,
            "Charge_Type__c": charge, "Billing_Interval__c": interval, "Tax_Category__c": "standard",
            "Description": f"{name}: {model.replace('_', ' ')} pricing", **extra}, caller)
        for currency in CURRENCIES:
            values: dict[str, Any] = {"Pricebook2Id": book, "Product2Id": product_id, "IsActive": True,
                                      "CurrencyIsoCode": currency, "UnitPrice": _price(unit, currency)}
            if tiers:
                values["Price_Tiers__c"] = _tiers_in(tiers, currency)
            if overage:
                values["Overage_Price__c"] = _price(overage, currency) if currency != "JPY" else Decimal("80")
            entry_id = org.create(entry_obj, values, caller)
            stored = org.store.get("PricebookEntry", entry_id)
            assert stored is not None
            entries[(code, currency)] = stored
    return entries


def _luhn_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return str((10 - total % 10) % 10)


def vat_id(country: str, number: int) -> str:
    """A VAT number of the country with valid check digits, drawn from ``number`` (France: key and
    SIREN; Germany: ISO 7064 mod 11,10; Spain: a company CIF), so the demo's accounts are accepted."""
    if country == "France":
        base = f"{number % 10**8:08d}"
        siren = base + _luhn_digit(base)
        return f"FR{(12 + 3 * (int(siren) % 97)) % 97:02d}{siren}"
    if country == "Germany":
        base = f"{10**7 + number % (9 * 10**7):08d}"
        product = 10
        for ch in base:
            s = (int(ch) + product) % 10 or 10
            product = (2 * s) % 11
        return f"DE{base}{(11 - product) % 10}"
    base = f"{number % 10**7:07d}"
    odd = sum(sum(divmod(2 * int(d), 10)) for d in base[0::2])
    even = sum(int(d) for d in base[1::2])
    return f"ESB{base}{(10 - (odd + even) % 10) % 10}"


def _account_values(rng: random.Random, index: int, name: str) -> dict[str, Any]:
    currency = CURRENCIES[index % len(CURRENCIES)]
    city, postcode, country, zone, tax = rng.choice(PLACES[currency])
    values: dict[str, Any] = {
        "Name": name, "CurrencyIsoCode": currency, "Type": "Customer - Direct",
        "Industry": rng.choice(["Technology", "Finance", "Retail", "Manufacturing", "Media"]),
        "BillingStreet": f"{rng.randint(1, 200)} {rng.choice(['Main', 'High', 'Market', 'Station'])} Street",
        "BillingCity": city, "BillingPostalCode": postcode, "BillingCountry": country,
        "Billing_Timezone__c": zone, "Tax_Rate__c": Decimal(tax), "Payment_Terms_Days__c": rng.choice([14, 30, 45]),
        "Phone": f"+{rng.randint(10, 99)} {rng.randint(100000000, 999999999)}",
    }
    if currency == "EUR":
        values["VAT_Id__c"] = vat_id(country, rng.randint(10**9, 10**10 - 1))
        if index % 7 == 3:  # an intra-EU B2B customer taxed by reverse charge
            values["Tax_Rate__c"] = Decimal(0)
            values["Tax_Exempt_Reason__c"] = "Reverse charge: Art. 196 VAT Directive"
    return values


# Lines of a won deal: (product code, quantity, discount %, contract price factor vs list)
DEAL_SHAPES = [
    [("LIC", 12, None, None), ("PLATFORM", 1, None, None), ("SUPPORT", 1, None, None)],
    [("LIC", 8, "10", None), ("DATA", 1, None, None), ("ONBOARD", 1, None, None)],
    [("SEATS", 20, None, "0.88"), ("PLATFORM", 1, "5", None), ("API-1000", 1, None, None)],
    [("LIC-Y", 15, None, None), ("PLATFORM-Y", 1, "15", None), ("SUPPORT", 1, None, None)],
    [("SEATS", 50, "20", None), ("STORAGE", 1, None, None), ("DATA", 2, None, "0.9")],
    [("LIC", 3, None, None), ("ONBOARD", 1, "50", None)],
]
STAGES_OPEN = ["Prospecting", "Qualification", "Proposal", "Negotiation"]


def _small(org: Org, rng: random.Random) -> dict[str, int]:
    caller = Caller(org.user_id, None)
    entries = create_catalogue(org, caller)
    book = org.standard_pricebook_id()
    account_obj, contact_obj = org.object("Account"), org.object("Contact")
    opp_obj, quote_obj, line_obj = org.object("Opportunity"), org.object("Quote"), org.object("QuoteLineItem")
    accounts = []
    with org.store.transaction():
        for i, company in enumerate(COMPANIES):
            name = f"{company} {SUFFIXES[i % len(SUFFIXES)]}"
            account_id = org.create(account_obj, _account_values(rng, i, name), caller)
            accounts.append(account_id)
            org.create(contact_obj, {"FirstName": rng.choice(["Ada", "Grace", "Alan", "Linus", "Hedy", "Ken"]),
                                     "LastName": rng.choice(["Lovelace", "Hopper", "Turing", "Torvalds", "Lamarr"]),
                                     "Email": f"billing@{company.lower().replace(' ', '')}.example",
                                     "AccountId": account_id, "Title": "Head of Finance"}, caller)
        base = date(2026, 1, 5)
        won = 0
        for n in range(30):
            account_id = accounts[n % len(accounts)]
            account = org.store.get("Account", account_id)
            assert account is not None
            currency = account["CurrencyIsoCode"]
            is_won = n < 12
            stage = "Closed Won" if is_won else ("Closed Lost" if n % 6 == 0 else STAGES_OPEN[n % 4])
            close = base + timedelta(days=9 * n)
            opp_values: dict[str, Any] = {
                "Name": f"{account['Name']} - {'New subscription' if n < 20 else 'Expansion'}",
                "AccountId": account_id, "StageName": "Negotiation" if is_won else stage,
                "CloseDate": close.isoformat(), "Type": "New Business", "Pricebook2Id": book,
                "Term_Months__c": rng.choice([12, 12, 24, 36]), "Auto_Renew__c": n % 5 != 4,
            }
            if n % 4 == 1:
                opp_values["Service_Start_Date__c"] = (close + timedelta(days=10)).isoformat()
            if n % 6 == 2:
                opp_values["Minimum_Commitment__c"] = _price("1000", currency)
            if n % 8 == 5:
                opp_values["Billing_Anchor_Day__c"] = 1
            opp_id = org.create(opp_obj, opp_values, caller)
            if not (is_won or stage in ("Proposal", "Negotiation")):
                continue
            quote_id = org.create(quote_obj, {"Name": f"Q-{n + 1:04d}", "OpportunityId": opp_id,
                                              "Status": "Accepted" if is_won else "Presented",
                                              "ExpirationDate": (close + timedelta(days=30)).isoformat()}, caller)
            for code, quantity, discount, factor in DEAL_SHAPES[n % len(DEAL_SHAPES)]:
                entry = entries[(code, currency)]
                price = Decimal(entry["UnitPrice"])
                if factor is not None:
                    _, scale = FX[currency]
                    price = (price * Decimal(factor)).quantize(Decimal(1).scaleb(-scale))
                line: dict[str, Any] = {"QuoteId": quote_id, "PricebookEntryId": entry["Id"], "Quantity": quantity,
                                        "UnitPrice": price, "ServiceDate": opp_values.get("Service_Start_Date__c")}
                if discount is not None:
                    line["Discount"] = Decimal(discount)
                org.create(line_obj, line, caller)
            if is_won:
                org.update(opp_obj, opp_id, {"SyncedQuoteId": quote_id, "StageName": "Closed Won"}, caller)
                won += 1
    return {name: org.store.count(name) for name in org.schema.objects}


# ----------------------------------------------------------------------------- large


def _large(org: Org, rng: random.Random, accounts: int = 100_000) -> dict[str, int]:
    """Fast path: records are built here with their derived fields and bulk-inserted."""
    caller = Caller(org.user_id, None)
    entries = create_catalogue(org, caller)
    book = org.standard_pricebook_id()
    now = format_datetime(org.clock())
    user = org.user_id
    system = {"IsDeleted": False, "CreatedDate": now, "CreatedById": user, "LastModifiedDate": now,
              "LastModifiedById": user, "SystemModstamp": now}
    new_id = org.store.ids.next
    account_rows, opp_rows, quote_rows, line_rows = [], [], [], []
    base = date(2025, 1, 1)
    quote_no = org.store.autonumbers.get("Quote", 0)
    line_no = org.store.autonumbers.get("QuoteLineItem", 0)
    for i in range(accounts):
        name = f"{COMPANIES[i % len(COMPANIES)]} {i:06d} {SUFFIXES[i % len(SUFFIXES)]}"
        values = _account_values(rng, i, name)
        account_id = new_id("001")
        account_rows.append({**values, **system, "Id": account_id, "OwnerId": user})
        currency = values["CurrencyIsoCode"]
        for k in range(1 + (i % 3 == 0)):  # 1.33 opportunities per account
            roll = rng.random()
            won = roll < 0.4
            stage = "Closed Won" if won else ("Closed Lost" if roll < 0.55 else rng.choice(STAGES_OPEN))
            close = base + timedelta(days=rng.randrange(0, 700))
            opp_id = new_id("006")
            opp = {"Id": opp_id, **system, "OwnerId": user, "Name": f"{name} - deal {k + 1}", "AccountId": account_id,
                   "StageName": stage, "CloseDate": close.isoformat(), "Type": "New Business",
                   "Pricebook2Id": book, "CurrencyIsoCode": currency, "IsClosed": stage.startswith("Closed"),
                   "IsWon": won, "Probability": Decimal(100 if won else (0 if stage == "Closed Lost" else 50)),
                   "HasOpportunityLineItem": False, "Term_Months__c": 12, "Auto_Renew__c": True}
            if won:
                quote_id = new_id("0Q0")
                quote_no += 1
                subtotal = total = Decimal("0.00")
                shape = DEAL_SHAPES[rng.randrange(len(DEAL_SHAPES))]
                for code, quantity, discount, factor in shape:
                    entry = entries[(code, currency)]
                    price = Decimal(entry["UnitPrice"])
                    if factor is not None:
                        price = (price * Decimal(factor)).quantize(Decimal(1).scaleb(-FX[currency][1]))
                    sub = (price * quantity).quantize(Decimal("0.01"))
                    tot = (sub * (100 - Decimal(discount or 0)) / 100).quantize(Decimal("0.01"))
                    subtotal += sub
                    total += tot
                    line_no += 1
                    line = {"Id": new_id("0QL"), **system, "QuoteId": quote_id, "PricebookEntryId": entry["Id"],
                            "Product2Id": entry["Product2Id"], "Quantity": Decimal(quantity), "UnitPrice": price,
                            "ListPrice": entry["UnitPrice"], "Subtotal": sub, "TotalPrice": tot,
                            "CurrencyIsoCode": currency, "LineNumber": f"{line_no:07d}"}
                    if discount is not None:
                        line["Discount"] = Decimal(discount)
                    line_rows.append(line)
                quote_rows.append({"Id": quote_id, **system, "Name": f"Q-{quote_no:07d}", "OpportunityId": opp_id,
                                   "AccountId": account_id, "Pricebook2Id": book, "Status": "Accepted",
                                   "IsSyncing": True, "QuoteNumber": f"{quote_no:08d}", "Subtotal": subtotal,
                                   "TotalPrice": total, "GrandTotal": total, "LineItemCount": len(shape),
                                   "CurrencyIsoCode": currency,
                                   "Discount": ((subtotal - total) / subtotal * 100).quantize(Decimal("0.01"))})
                opp["SyncedQuoteId"] = quote_id
                opp["Amount"] = total
            opp_rows.append(opp)
    org.store.autonumbers["Quote"] = quote_no
    org.store.autonumbers["QuoteLineItem"] = line_no
    for obj, rows in (("Account", account_rows), ("Opportunity", opp_rows), ("Quote", quote_rows),
                      ("QuoteLineItem", line_rows)):
        org.store.bulk_insert(obj, rows)
    return {name: org.store.count(name) for name in org.schema.objects}
