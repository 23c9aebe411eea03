"""A year of billing with a fixed clock: three customers (EUR, USD, JPY), every month checked by hand.

Bill runs on the 1st of each month of 2026 through the engine's ``charges_due``.
Rules: docs/billing-rules.md §14 Tax (per rate, round once), §3 Proration (day-based,
two lines), §5 Pricing models (graduated, volume, allowance, percent_of), §13 Invoices,
§16 Payments and refunds, §17 Revenue metrics: MRR and ARR (bridge). Expected totals below
are computed by hand.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D

from sqlalchemy import select
from sqlmodel import Session

from billing_engine.catalog import make_price, make_product
from billing_engine.customers import Customer
from billing_engine.storage.invoices import CreditNote, Invoice, invoice_lines
from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription
from billing_engine.use_cases.billing import SubscriptionChargeSource, account_for, run_billing
from billing_engine.use_cases.payments import customer_summary, record_payment
from billing_engine.use_cases.revenue import SubscriptionMrrSource, mrr_bridge, usage_revenue
from billing_engine.use_cases.usage import record_usage
from connector.database import transaction
from tests.support.billing import seed

SEATS = make_product("p-seats", "SEATS", "Licences")
SUPPORT = make_product("p-support", "SUPPORT", "Premium support")
DATA = make_product("p-data", "DATA", "Data plan")
PLATFORM = make_product("p-platform", "PLATFORM", "Platform (annual)")
PRO = make_product("p-pro", "PRO", "Pro plan")
BASE = make_product("p-base", "BASE", "Base fee")
API = make_product("p-api", "API", "API calls")

LICENCE_TIERS = [{"up_to": 5, "unit_price": 200}, {"up_to": 10, "unit_price": 150}, {"up_to": None, "unit_price": 100}]

CUSTOMERS = {
    "cus-a": Customer("cus-a", "Acme GmbH", "EUR", tax_rate_percent=D(20)),
    "cus-b": Customer("cus-b", "Bolt Inc", "USD", tax_exempt_reason="Export of services: outside the scope of VAT"),
    "cus-c": Customer("cus-c", "Chiyoda KK", "JPY", tax_rate_percent=D(10)),
}


def subscriptions():
    a = make_subscription("sub-a", "cus-a", "EUR", date(2026, 1, 1), [
        SubscriptionItem("a-seats", make_price("pr-seats", SEATS, currency="EUR", model="graduated",
                                               tiers=LICENCE_TIERS), quantity=D(12)),
        SubscriptionItem("a-support", make_price("pr-support", SUPPORT, currency="EUR", model="percent_of",
                                                 percent="10", covered_product_codes=["SEATS"])),
        SubscriptionItem("a-data", make_price("pr-data", DATA, currency="EUR", model="allowance",
                                              charge_type="usage", unit_price="10", included_units="40",
                                              overage_unit_price="0.50")),
    ])
    b1 = make_subscription("sub-b1", "cus-b", "USD", date(2026, 1, 1), [
        SubscriptionItem("b-platform", make_price("pr-platform", PLATFORM, currency="USD", model="volume",
                                                  interval="year",
                                                  tiers=[{"up_to": 5, "unit_price": 700},
                                                         {"up_to": 10, "unit_price": 650},
                                                         {"up_to": None, "unit_price": 600}]), quantity=D(20)),
    ])
    b2 = make_subscription("sub-b2", "cus-b", "USD", date(2026, 1, 1), [
        SubscriptionItem("b-pro", make_price("pr-pro", PRO, currency="USD", model="flat", unit_price="300")),
    ])
    c = make_subscription("sub-c", "cus-c", "JPY", date(2026, 1, 1), [
        SubscriptionItem("c-base", make_price("pr-base", BASE, currency="JPY", model="flat", unit_price="5000")),
        SubscriptionItem("c-api", make_price("pr-api", API, currency="JPY", model="graduated", charge_type="usage",
                                             tiers=[{"up_to": 1000, "unit_price": 10},
                                                    {"up_to": None, "unit_price": 5}])),
    ])
    return {s.subscription_id: s for s in (a, b1, b2, c)}


class World:
    def __init__(self):
        self.subs = subscriptions()

    def load_accounts(self, session, as_of, after, limit):
        ids = sorted(c for c in CUSTOMERS if after is None or c > after)[:limit]
        return [account_for(CUSTOMERS[c]) for c in ids]

    def load_subscriptions(self, session, customer_ids):
        return [s for s in self.subs.values() if s.customer_id in customer_ids]

    def amend(self, sid, **kw):
        sub = self.subs[sid]
        self.subs[sid] = sub.amend(Amendment(sub.next_amendment_id(), 0, **kw))


def usage(engine, sub, item, qty, on, key):
    with transaction(engine) as s:
        record_usage(s, subscription_id=sub, item_id=item, quantity=D(qty), occurred_at=datetime.combine(on, datetime.min.time(), UTC),
                         source="meter", idempotency_key=key)


def pay(engine, customer, amount, currency, on, ref):
    with transaction(engine) as s:
        return record_payment(s, customer_id=customer, amount=D(amount), currency=currency, received_on=on,
                                  method="bank_transfer", source="bank", external_reference=ref)


# Hand-computed invoice totals (tax included) per bill-run date and customer.
# A (EUR, 20 %): seats graduated q=12: 5×200 + 5×150 + 2×100 = 1,950; support 10 % of seats = 195;
#   data allowance billed in arrears: 10 incl. 40 GB, 0.50/GB over.
# B (USD, exempt): platform volume q=20 → 20 × 600 = 12,000 per year, in advance; Pro 300/month.
# C (JPY, 10 %): base 5,000/month; API graduated in arrears: 1–1,000 at 10, 1,001+ at 5.
EXPECTED = {
    # Jan: A 1,950 + 195 = 2,145 + 20 % 429 = 2,574.00 | B 12,000 + 300 = 12,300 | C 5,000 + 500 = 5,500
    date(2026, 1, 1): {"cus-a": D("2574.00"), "cus-b": D("12300.00"), "cus-c": D(5500)},
    # Feb: A 2,145 + Jan data 55 GB = 10 + 15 × 0.50 = 17.50 → 2,162.50 + 432.50 = 2,595.00 | B 300
    #      C 5,000 + Jan API 1,500 = 1,000×10 + 500×5 = 12,500 → 17,500 + 1,750 = 19,250
    date(2026, 2, 1): {"cus-a": D("2595.00"), "cus-b": D("300.00"), "cus-c": D(19250)},
    # Mar: A 2,145 + Feb data 30 GB → 10 = 2,155 + 431 = 2,586.00 | C 5,000 + 800 × 10 = 13,000 + 1,300 = 14,300
    date(2026, 3, 1): {"cus-a": D("2586.00"), "cus-b": D("300.00"), "cus-c": D(14300)},
    # Apr: A Mar data 40 GB → 10: 2,586.00 | C 5,000 + 200 × 10 = 7,000 + 700 = 7,700 (late March usage not in yet)
    date(2026, 4, 1): {"cus-a": D("2586.00"), "cus-b": D("300.00"), "cus-c": D(7700)},
    # May: A seats 12 → 15 on Apr 16 (15 of 30 days left). New price: 5×200 + 5×150 + 5×100 = 2,250.
    #      recurring 2,250 + support 225 + Apr data 10 = 2,485;
    #      proration seats −1,950 × 15/30 = −975.00, +2,250 × 15/30 = +1,125.00;
    #      support follows its covered lines: −97.50, +112.50 → net proration +165.00
    #      2,485 + 165 = 2,650.00 + 530.00 = 3,180.00
    #      C: late March usage (300 more, 500 in all → 5,000; 2,000 billed) → +3,000 as its own line;
    #      5,000 + 3,000 + Apr API 0 = 8,000 + 800 = 8,800
    date(2026, 5, 1): {"cus-a": D("3180.00"), "cus-b": D("300.00"), "cus-c": D(8800)},
    date(2026, 6, 1): {"cus-a": D("2982.00"), "cus-b": D("300.00"), "cus-c": D(5500)},  # A 2,485 + 497
    # Jul: B Pro 300 → 150 on Jun 16 (15 of 30 days left): credit −150.00, charge +75.00; 150 − 75 = 75.00
    date(2026, 7, 1): {"cus-a": D("2982.00"), "cus-b": D("75.00"), "cus-c": D(5500)},
    date(2026, 8, 1): {"cus-a": D("2982.00"), "cus-b": D("150.00"), "cus-c": D(5500)},
    date(2026, 9, 1): {"cus-a": D("2982.00"), "cus-b": D("150.00"), "cus-c": D(5500)},
    # Oct: C cancelled immediately on Sep 11: credit 5,000 × 20/30 = 3,333.33 → −3,333 exceeds the invoice:
    #      the invoice total is 0 and credit note = 3,333 + 10 % 333 = 3,666 becomes customer credit.
    date(2026, 10, 1): {"cus-a": D("2982.00"), "cus-b": D("150.00"), "cus-c": D(0)},
    date(2026, 11, 1): {"cus-a": D("2982.00"), "cus-b": D("150.00")},
    date(2026, 12, 1): {"cus-a": D("2982.00"), "cus-b": D("150.00")},
}


def totals_by_customer(engine, on):
    with Session(engine) as s:
        rows = s.scalars(select(Invoice).where(Invoice.bill_run_on == on)).all()
    out = {}
    for inv in rows:
        assert inv.customer_id not in out, "one invoice per customer and currency"
        out[inv.customer_id] = inv.total
    return out


def test_a_year_of_billing(engine):
    world = World()
    seed(engine, {c.customer_id: c.currency for c in CUSTOMERS.values()},
         {s.subscription_id: s.customer_id for s in world.subs.values()})
    source = SubscriptionChargeSource(world.load_accounts, world.load_subscriptions)
    for month in range(1, 13):
        run_on = date(2026, month, 1)
        # events of the previous month, in date order
        if month == 2:
            usage(engine, "sub-a", "a-data", 55, date(2026, 1, 20), "a-jan")
            usage(engine, "sub-c", "c-api", 1500, date(2026, 1, 20), "c-jan")
        if month == 3:
            usage(engine, "sub-a", "a-data", 30, date(2026, 2, 20), "a-feb")
            usage(engine, "sub-c", "c-api", 800, date(2026, 2, 20), "c-feb")
            usage(engine, "sub-c", "c-api", 800, date(2026, 2, 20), "c-feb")  # resent: no effect
        if month == 4:
            usage(engine, "sub-a", "a-data", 40, date(2026, 3, 20), "a-mar")
            usage(engine, "sub-c", "c-api", 200, date(2026, 3, 20), "c-mar")
        if month == 5:
            usage(engine, "sub-c", "c-api", 300, date(2026, 3, 25), "c-mar-late")  # arrived Apr 5, after March was billed
            world.amend("sub-a", action=AmendmentAction.CHANGE_QUANTITY, effective_on=date(2026, 4, 16),
                        item_id="a-seats", quantity=D(15))
        if month == 7:
            world.amend("sub-b2", action=AmendmentAction.CHANGE_PRICE, effective_on=date(2026, 6, 16),
                        item_id="b-pro", unit_price=D(150))
        if month == 10:
            world.amend("sub-c", action=AmendmentAction.CANCEL, effective_on=date(2026, 9, 11), immediate=True)
        result = run_billing(engine, run_on, source=source)
        assert result.failures == {}, result.failures
        assert totals_by_customer(engine, run_on) == EXPECTED[run_on], run_on
        assert run_billing(engine, run_on, source=source).invoices_created == 0  # idempotent

        if month == 1:
            jan_a = pay(engine, "cus-a", "1000.00", "EUR", date(2026, 1, 15), "A-1")
            assert pay(engine, "cus-a", "1000.00", "EUR", date(2026, 1, 16), "A-1").payment_id == jan_a.payment_id
            pay(engine, "cus-b", "12400.00", "USD", date(2026, 1, 20), "B-1")  # 100.00 over → credit
        if month == 2:
            pay(engine, "cus-a", "1574.00", "EUR", date(2026, 2, 10), "A-2")  # rest of January: 2,574 − 1,000

    with Session(engine) as s:
        invoices = s.scalars(select(Invoice).order_by(Invoice.id)).all()
        # numbers: gapless over the year, one sequence
        assert [i.number for i in invoices] == [f"INV-2026-{n:06d}" for n in range(1, len(invoices) + 1)]
        jan_a, feb_b = invoices[0], next(i for i in invoices if i.customer_id == "cus-b" and i.bill_run_on.month == 2)
        assert (jan_a.status, jan_a.amount_paid) == ("paid", D("2574.00"))
        # B's 100.00 overpayment was applied to February: 300 − 100 = 200 due
        assert (feb_b.amount_credited, feb_b.balance) == (D("100.00"), D("200.00"))
        # the late March usage is its own line on May's invoice, dated to March
        may_c = next(i for i in invoices if i.customer_id == "cus-c" and i.bill_run_on.month == 5)
        # the late March usage is billed on May's invoice, dated to March, apart from May's lines:
        # March re-rated on its whole quantity (500 calls → 5,000) minus what was billed (2,000):
        # one usage line of +3,000 for the 300 calls that came late, with its own charge key.
        late = [ln for ln in invoice_lines(s, may_c.id) if ln.item_id == "c-api" and ln.starts_on.month == 3]
        assert [(ln.kind, ln.quantity, ln.net, ln.starts_on, ln.ends_before) for ln in late] == [
            ("usage", D(300), D(3000), date(2026, 3, 1), date(2026, 4, 1))]
        assert late[0].charge_key.startswith("sub-c:c-api:2026-03-01:usage#late-")
        apr_c = next(i for i in invoices if i.customer_id == "cus-c" and i.bill_run_on.month == 4)
        assert apr_c.total == D(7700)  # the April invoice (already final) is untouched
        # C's cancellation credit note: 3,333 + 333 tax = 3,666 into C's credit balance
        [note] = s.scalars(select(CreditNote)).all()
        assert (note.number, note.net, note.tax, note.total) == ("CN-2026-000001", D(3333), D(333), D(3666))
        assert customer_summary(s, "cus-c", date(2026, 12, 31))[0].credit_balance == D(3666)
        # usage revenue, reported apart from MRR, by the period the usage belongs to:
        # EUR data: Jan 17.50 + Feb 10 + Mar 10 + Apr..Nov 8 × 10 = 117.50 (December's is billed in 2027)
        # JPY API: Jan 12,500 + Feb 8,000 + Mar 2,000 + late Mar 3,000 = 25,500
        assert usage_revenue(s, date(2026, 1, 1), date(2027, 1, 1)) == {"EUR": D("117.50"), "JPY": D(25500)}
        # MRR bridge: opening + movements = closing, every month and currency
        rows, moves = mrr_bridge(s, "2026-01", "2026-12", source=SubscriptionMrrSource(
            lambda _s: world.subs.values()))
    assert all(r.holds() for r in rows)
    closing = {(r.period, r.currency): r.closing for r in rows}
    # A: 1,950 + 195 = 2,145 → 2,250 + 225 = 2,475 from Apr 16 (expansion 330 in April)
    assert closing[("2026-03", "EUR")] == D("2145.00") and closing[("2026-04", "EUR")] == D("2475.00")
    # B: 12,000 / 12 + 300 = 1,300 → 1,150 from Jun 16 (contraction 150)
    assert closing[("2026-05", "USD")] == D("1300.00") and closing[("2026-06", "USD")] == D("1150.00")
    # C: 5,000 until the immediate cancellation on Sep 11 → churn 5,000 in September
    assert closing[("2026-08", "JPY")] == D(5000) and closing[("2026-09", "JPY")] == 0
    assert sorted((m.period, m.customer_id, m.kind, abs(m.amount)) for m in moves) == [
        ("2026-01", "cus-a", "new", D("2145.00")), ("2026-01", "cus-b", "new", D("1300.00")),
        ("2026-01", "cus-c", "new", D(5000)), ("2026-04", "cus-a", "expansion", D("330.00")),
        ("2026-06", "cus-b", "contraction", D("150.00")), ("2026-09", "cus-c", "churn", D(5000))]
