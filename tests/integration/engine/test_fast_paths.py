"""The bill run's and the MRR bridge's fast paths give exactly what the slow paths give, on a mixed
dataset: several currencies, discounts, contract prices, yearly and quarterly items, fixed terms,
uplifted renewals, amendments (quantity changes, added items, end-of-term and immediate
cancellations), customers with several subscriptions, identical customers (grouped by the bridge)
and a customer without any subscription."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date
from decimal import Decimal as D

from sqlalchemy import select
from sqlmodel import Session

from billing_engine.catalog import make_price, make_product
from billing_engine.charges import charges_due
from billing_engine.customers import Customer
from billing_engine.invoicing import assemble_invoice
from billing_engine.storage.invoices import Invoice, invoice_lines
from billing_engine.storage.outbox import OutboxRow
from billing_engine.storage.subscriptions import plain_subscription_groups
from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription
from billing_engine.tax import TaxRate
from billing_engine.use_cases.billing import bill_customers
from billing_engine.use_cases.catalog import upsert_price, upsert_product
from billing_engine.use_cases.customers import get_customer, upsert_customer
from billing_engine.use_cases.revenue import (
    SubscriptionMrrSource,
    database_mrr_source,
    mrr_bridge,
    mrr_bridge_report,
)
from billing_engine.use_cases.subscriptions import (
    amend_subscription,
    cancel_subscription,
    get_subscription,
    start_subscription,
)
from connector.database import transaction


def _prices():
    seats = make_product("p-seats", "SEATS", "Licences")
    support = make_product("p-support", "SUPPORT", "Support")
    platform = make_product("p-platform", "PLATFORM", "Platform")
    year = make_product("p-year", "YEAR", "Annual plan")
    quarter = make_product("p-quarter", "QUARTER", "Quarterly pack")
    tiers = [{"up_to": 5, "unit_price": 200}, {"up_to": 10, "unit_price": 150}, {"up_to": None, "unit_price": 100}]
    out = {}
    for currency, scale in (("EUR", 1), ("USD", 1), ("JPY", 150), ("KWD", D("0.3"))):
        c = currency.lower()
        out[currency] = {
            "seats": make_price(f"{c}-seats", seats, currency=currency, model="graduated",
                                tiers=[{"up_to": t["up_to"], "unit_price": t["unit_price"] * scale} for t in tiers]),
            "support": make_price(f"{c}-support", support, currency=currency, model="percent_of", percent="10",
                                  covered_product_codes=["SEATS"]),
            "platform": make_price(f"{c}-platform", platform, currency=currency, model="flat",
                                   unit_price=D("49.99") * scale if currency != "JPY" else 7500),
            "year": make_price(f"{c}-year", year, currency=currency, model="per_unit", interval="year",
                               unit_price=100 * scale),
            "quarter": make_price(f"{c}-quarter", quarter, currency=currency, model="volume", interval="quarter",
                                  tiers=[{"up_to": 10, "unit_price": D("33.33") * scale},
                                         {"up_to": None, "unit_price": D("25.005") * scale}]),
        }
    return out


PRICES = _prices()
CURRENCIES = ("EUR", "USD", "JPY", "KWD")


def seed_mixed(engine, n: int = 96) -> list[str]:
    """``n`` customers cycling through the variants; returns the subscription ids."""
    with transaction(engine) as s:
        for prices in PRICES.values():
            for price in prices.values():
                upsert_product(s, price.product)
                upsert_price(s, price)
        upsert_customer(s, Customer("cus-none", "No subscription", "EUR"))
    sids = []
    with transaction(engine) as s:
        for i in range(n):
            currency = CURRENCIES[i % 4]
            p = PRICES[currency]
            cid = f"cus-{i:03d}"
            upsert_customer(s, Customer(cid, cid, currency, tax_rate_percent=D(i % 3 * 10)))
            variant = i // 4 % 12
            starts = [date(2025, 11, 5), date(2026, 1, 1), date(2026, 3, 17), date(2025, 6, 30)][i % 4 if variant
                                                                                                    else 1]
            items = [SubscriptionItem(f"s{i}-seats", p["seats"], quantity=D(1 + (i if variant >= 6 else 0) % 13)),
                     SubscriptionItem(f"s{i}-support", p["support"])]
            kw = {}
            if variant in (1, 7):
                items.append(SubscriptionItem(f"s{i}-platform", p["platform"], discount_percent=D("12.5")))
            if variant in (2, 8):
                items.append(SubscriptionItem(f"s{i}-platform", p["platform"], discount_amount=D("5")))
            if variant == 3:
                items = [SubscriptionItem(f"s{i}-year", p["year"], quantity=D(3)),
                         SubscriptionItem(f"s{i}-seats", p["seats"], contract_unit_price=D("99.5"), quantity=D(4))]
            if variant == 4:
                items.append(SubscriptionItem(f"s{i}-quarter", p["quarter"], quantity=D(11)))
            if variant == 5:
                kw = {"term_months": 6, "auto_renew": False}
            if variant == 9:
                kw = {"term_months": 3, "auto_renew": True, "renewal_uplift_percent": 5}
            sid = f"sub-{i:03d}"
            start_subscription(s, make_subscription(sid, cid, currency, starts, items, **kw))
            sids.append(sid)
            if variant == 5 and i % 8 == 4:  # ends after 6 months, comes back: a reactivation
                sid2 = f"sub-{i:03d}-r"
                start_subscription(s, make_subscription(
                    sid2, cid, currency, date(2026, 9, 1), [SubscriptionItem(f"s{i}-r-seats", p["seats"])]))
                sids.append(sid2)
            if variant == 10:  # a second subscription: the customer's MRR is the sum of both
                sid2 = f"sub-{i:03d}-b"
                start_subscription(s, make_subscription(
                    sid2, cid, currency, date(2026, 5, 20), [SubscriptionItem(f"s{i}-b-year", p["year"])]))
                sids.append(sid2)
    with transaction(engine) as s:
        for i in range(n):
            variant = i // 4 % 12
            sid = f"sub-{i:03d}"
            if variant == 6:
                amend_subscription(s, sid, Amendment("", 0, AmendmentAction.CHANGE_QUANTITY,
                                                              date(2026, 4, 16), item_id=f"s{i}-seats",
                                                              quantity=D(15)))
            elif variant == 7:
                cancel_subscription(s, sid, date(2026, 4, 10))  # at the end of the term
            elif variant == 8:
                cancel_subscription(s, sid, date(2026, 6, 11), immediate=True)
            elif variant == 11:
                amend_subscription(s, sid, Amendment("", 0, AmendmentAction.ADD_ITEM, date(2026, 5, 3),
                                                              item=SubscriptionItem(f"s{i}-x", PRICES[
                                                                  CURRENCIES[i % 4]]["platform"])))
                amend_subscription(s, sid, Amendment("", 0, AmendmentAction.CHANGE_QUANTITY,
                                                              date(2026, 8, 1), item_id=f"s{i}-seats",
                                                              quantity=D(1)))
    return sids


def _pure_rows(session, sids, from_month, to_month):
    subs = [get_subscription(session, sid) for sid in sorted(sids)]
    by_customer = sorted(subs, key=lambda sub: (sub.customer_id, sub.currency, sub.subscription_id))
    rows, _ = mrr_bridge(session, from_month, to_month,
                             source=SubscriptionMrrSource(lambda _s: by_customer))
    return [r.as_row() for r in rows]


def test_the_grouped_mrr_bridge_equals_the_per_customer_and_the_pure_bridge(engine):
    sids = seed_mixed(engine)
    with Session(engine) as s:
        groups = plain_subscription_groups(s)
        assert sum(n for _, n in groups) > len(groups), "identical customers are grouped"
        for from_month, to_month in (("2026-01", "2026-12"), ("2025-12", "2027-03"), ("2026-04", "2026-04")):
            fast = mrr_bridge_report(s, from_month, to_month)
            per_customer, moves = mrr_bridge(s, from_month, to_month, source=database_mrr_source(5))
            assert fast == [r.as_row() for r in per_customer]
            assert fast == _pure_rows(s, sids, from_month, to_month)
            assert {r["currency"] for r in fast} == set(CURRENCIES)
            if from_month == "2026-01":
                assert {m.kind for m in moves} == {"new", "expansion", "contraction", "churn", "reactivation"}
            # small pages: the same rows
            grouped, _ = mrr_bridge(s, from_month, to_month, source=database_mrr_source(3),
                                        collect_movements=False)
            assert [r.as_row() for r in grouped] == fast


def test_the_bill_run_equals_the_pure_charges_and_invoices(engine):
    sids = seed_mixed(engine)
    runs = (date(2026, 1, 1), date(2026, 2, 1), date(2026, 4, 1), date(2026, 7, 1))
    for on in runs:
        # big batches (PostgreSQL: COPY and one-statement upserts) and small ones (row by row)
        result = bill_customers(engine, on, batch_size=500 if on.month in (1, 4) else 7)
        assert result.failures == {}
    with Session(engine) as s:
        stored = defaultdict(list)
        for inv in s.scalars(select(Invoice).order_by(Invoice.id)):
            lines = invoice_lines(s, inv.id)
            stored[(inv.customer_id, inv.bill_run_on)].append(
                (inv.currency, inv.net, inv.tax, inv.total, inv.status,
                 [(ln.charge_key, ln.kind, ln.net, ln.gross, ln.line_discount, ln.explanation) for ln in lines]))
        outbox = {json.loads(r.payload)["invoice_id"]: json.loads(r.payload)
                  for r in s.scalars(select(OutboxRow).where(OutboxRow.topic == "invoice.finalized"))}
        subs = [get_subscription(s, sid) for sid in sids]
        customers = {c: get_customer(s, c) for c in {sub.customer_id for sub in subs}}
        invoices = list(s.scalars(select(Invoice)))
    # the pure slow path: charges_due per subscription, one invoice per customer and run
    expected = defaultdict(list)
    billed: dict[str, list] = defaultdict(list)
    for on in runs:
        lines_of = defaultdict(list)
        for sub in sorted(subs, key=lambda x: (x.customer_id, x.currency, x.subscription_id)):
            if sub.starts_on > on:
                continue
            new = charges_due(sub, on, billed[sub.subscription_id])
            billed[sub.subscription_id].extend(new)
            lines_of[sub.customer_id].extend(new)
        for cid, lines in lines_of.items():
            customer = customers[cid]
            draft = assemble_invoice(lines, currency=customer.currency, tax_rate=TaxRate(customer.tax_rate(D(0))))
            if draft.is_empty:
                continue
            assert draft.credit_note is None and draft.credit_applied == 0
            expected[(cid, on)].append(
                (draft.currency, draft.totals.net, draft.totals.tax, draft.totals.total,
                 "paid" if draft.totals.total == 0 else "open",
                 [(ln.charge_key, ln.kind, ln.net, ln.gross, ln.line_discount, ln.explanation)
                  for ln in draft.lines]))
    assert dict(stored) == dict(expected)
    assert len(outbox) == len(invoices)
    for inv in invoices:
        payload = outbox[inv.id]
        assert (payload["number"], payload["total"], payload["customer_id"]) == (inv.number, str(inv.total),
                                                                                 inv.customer_id)
        assert payload["issued_on"] == inv.issued_on.isoformat() and payload["due_on"] == inv.due_on.isoformat()
