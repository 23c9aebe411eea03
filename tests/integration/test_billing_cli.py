"""``billsync bill-run`` and ``billsync metrics mrr`` through the CLI, on deals pulled from the sandbox."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select

from billing_engine.money import minor_units
from billing_engine.storage.catalog import CustomerRow
from billing_engine.storage.invoices import Invoice
from connector.cli import cli
from sfsandbox.server import AdminClient

pytestmark = pytest.mark.timeout(120)


def run(args, env):
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def pulled(org, services, connected_settings):
    """The sandbox's small org (20 accounts, 12 won deals) pulled into billsync."""
    from connector.sync.pull import pull_changes

    AdminClient(org.url, org.admin_token, org.ca_path).reset("small")
    report = pull_changes(services)
    assert report.failed_records == 0, report.object_errors
    from tests.support.sandbox import sandbox_environment

    return services, sandbox_environment(org, connected_settings.database_url)


@pytest.mark.parametrize("as_of, message", [
    ("2026-13-01", "--as-of: '2026-13-01' is not a valid date"),
    ("2026/11/01", "--as-of: '2026/11/01' is not a date; use YYYY-MM-DD"),
    ("tomorrow", "--as-of: 'tomorrow' is not a date"),
])
def test_a_bad_date_is_one_clear_line(settings, as_of, message):
    code, output = run(["bill-run", "--as-of", as_of], {"DATABASE_URL": settings.database_url})
    assert code == 2
    assert output.strip().splitlines() == [output.strip().splitlines()[0]]
    assert output.startswith(f"error: {message}")
    assert "Traceback" not in output


def test_bill_run_invoices_each_won_deal_once(pulled):
    services, env = pulled
    env = {**env, "BILL_RUN_MAX_PERIODS": "24"}  # finance has reviewed this year's back-billing
    code, output = run(["bill-run", "--as-of", "2026-11-24"], env)
    assert code == 0, output
    assert "bill run as of 2026-11-24: 12 invoices created, 12 finalized" in output
    assert "customers: 12 billed, 0 skipped (billed by another run), 0 failed" in output
    with Session(services.engine) as session:
        invoices = session.exec(select(Invoice)).all()
    assert len(invoices) == 12
    assert {inv.status for inv in invoices} <= {"open", "paid"}
    assert sorted(inv.number for inv in invoices) == [f"INV-2026-{n:06d}" for n in range(1, 13)]

    # Idempotent: the same date bills nothing more.
    code, output = run(["bill-run", "--as-of", "2026-11-24"], env)
    assert code == 0
    assert "0 invoices created" in output


def test_bill_run_holds_drafts_when_finance_reviews(pulled):
    services, env = pulled
    code, output = run(["bill-run", "--as-of", "2026-02-01"], {**env, "HOLD_INVOICES_FOR_REVIEW": "true"})
    assert code == 0, output
    assert "0 finalized (HOLD_INVOICES_FOR_REVIEW: left as drafts)" in output
    with Session(services.engine) as session:
        statuses = {inv.status for inv in session.exec(select(Invoice)).all()}
    assert statuses == {"draft"}


def test_bill_run_on_a_database_that_is_not_there_fails_clearly(tmp_path):
    code, output = run(["bill-run", "--as-of", "2026-11-24"],
                       {"DATABASE_URL": f"sqlite:///{tmp_path}/missing/none.db"})
    assert code != 0
    assert output.startswith("error: bill run as of 2026-11-24 could not run:")
    assert "Traceback" not in output


def test_mrr_bridge_table_and_csv_hold_exactly(pulled):
    _, env = pulled
    code, output = run(["metrics", "mrr", "--from", "2026-01", "--to", "2026-12", "--csv"], env)
    assert code == 0, output
    rows = list(csv.DictReader(io.StringIO(output)))
    assert {r["currency"] for r in rows} == {"EUR", "USD", "JPY"}
    assert {r["month"] for r in rows} == {f"2026-{m:02d}" for m in range(1, 13)}
    closing: dict[str, Decimal] = {}
    for row in rows:
        d = {k: Decimal(row[k]) for k in ("opening", "new", "expansion", "reactivation", "contraction", "churn",
                                          "closing", "arr")}
        assert d["opening"] + d["new"] + d["expansion"] + d["reactivation"] - d["contraction"] - d["churn"] \
            == d["closing"], row
        # ARR is each customer's yearly amount (its unrounded MRR × 12, rounded once): within
        # 12 × half a minor unit per customer of the rounded closing MRR × 12.
        unit = Decimal(1).scaleb(-minor_units(row["currency"]))
        assert abs(d["arr"] - d["closing"] * 12) <= 6 * unit * int(row["customers"]), row
        # Each month opens where the previous one closed.
        assert d["opening"] == closing.get(row["currency"], Decimal(0)), row
        closing[row["currency"]] = d["closing"]
    # 12 won deals in the seed, none churned this year: every currency ends with recurring revenue.
    assert all(value > 0 for value in closing.values())
    assert sum(int(r["customers"]) for r in rows if r["month"] == "2026-12") == 12

    code, table = run(["metrics", "mrr", "--from", "2026-01", "--to", "2026-02"], env)
    assert code == 0
    lines = table.splitlines()
    assert lines[0].split() == ["month", "currency", "opening", "new", "expansion", "reactivation",
                                "contraction", "churn", "closing", "arr", "customers"]
    assert len(lines) == 1 + 2 * 3


def test_mrr_bad_months_are_reported_one_line_each(settings):
    code, output = run(["metrics", "mrr", "--from", "2026/11", "--to", "2026-13"],
                       {"DATABASE_URL": settings.database_url})
    assert code == 2
    assert output.splitlines() == [
        "error: --from: '2026/11' is not a month; use YYYY-MM, for example 2026-11",
        "error: --to: '2026-13' is not a month; use YYYY-MM, for example 2026-11",
    ]
    code, output = run(["metrics", "mrr", "--from", "2026-05", "--to", "2026-01"],
                       {"DATABASE_URL": settings.database_url})
    assert code == 2
    assert output.splitlines() == ["error: --to: 2026-01 is before --from 2026-05"]


def test_customers_without_a_tax_rate_are_taxed_at_the_sellers_default(pulled):
    """docs/billing-rules.md §14 Tax: a customer is taxed at its rate, else the seller's default
    (DEFAULT_TAX_RATE)."""
    from connector.sync.pull import pull_changes

    services, env = pulled
    client = services.salesforce()
    accounts = list(client.query_all("SELECT Id FROM Account WHERE Tax_Exempt_Reason__c = null"))
    client.collections_update([{"attributes": {"type": "Account"}, "Id": a["Id"], "Tax_Rate__c": None}
                               for a in accounts])
    assert pull_changes(services, objects=["Account"]).failed_records == 0
    with Session(services.engine) as session:
        untaxed = {c.id for c in session.exec(select(CustomerRow)).all()
                   if c.tax_rate_percent is None and not c.tax_exempt_reason}
    assert untaxed, "clearing Tax_Rate__c in Salesforce should leave customers without a rate"
    code, output = run(["bill-run", "--as-of", "2026-11-24"], {**env, "DEFAULT_TAX_RATE": "20"})
    assert code == 0, output
    with Session(services.engine) as session:
        invoices = [inv for inv in session.exec(select(Invoice)).all() if inv.customer_id in untaxed]
    assert invoices
    for inv in invoices:
        assert inv.tax_percent == Decimal("20")
        # One rate on the invoice: tax = net × 20 %, rounded half up once (EN 16931 breakdown).
        assert inv.tax == (inv.net * Decimal("0.20")).quantize(Decimal("0.01") if inv.currency != "JPY"
                                                                 else Decimal("1"))


# ---------------------------------------------------------------- bounded dates, hold for review, dry run


def recurring_periods_of(session, invoice_id):
    """The most recurring periods one subscription covers on a stored invoice."""
    from billing_engine.storage.invoices import InvoiceLine

    periods: dict[str, set] = {}
    for line in session.exec(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id)).all():
        if line.kind == "recurring":
            periods.setdefault(line.subscription_id, set()).add(line.starts_on)
    return max((len(p) for p in periods.values()), default=0)


def test_back_billing_beyond_max_periods_is_held_for_review(pulled):
    """Deals won earlier this year are back-billed by the first run: the invoices covering more than
    BILL_RUN_MAX_PERIODS (3) months stay drafts held for review; the others are finalized."""
    services, env = pulled
    code, output = run(["bill-run", "--as-of", "2026-11-24"], env)
    assert code == 0, output
    assert "bill run as of 2026-11-24: 12 invoices created, 2 finalized, 0 credit notes issued" in output
    assert ("10 invoices held for review: covering more than 3 periods of a subscription "
            "(BILL_RUN_MAX_PERIODS); left as drafts") in output
    with Session(services.engine) as session:
        invoices = session.exec(select(Invoice)).all()
        periods = {inv.id: recurring_periods_of(session, inv.id) for inv in invoices}
    drafts = [inv for inv in invoices if inv.status == "draft"]
    assert len(drafts) == 10 and all(inv.number is None and periods[inv.id] > 3 for inv in drafts)
    assert all(periods[inv.id] <= 3 for inv in invoices if inv.status != "draft")

    # HOLD_INVOICES_FOR_REVIEW still holds everything, whatever the periods.
    code, output = run(["bill-run", "--as-of", "2026-12-01"], {**env, "HOLD_INVOICES_FOR_REVIEW": "true"})
    assert code == 0, output
    assert "0 finalized (HOLD_INVOICES_FOR_REVIEW: left as drafts)" in output


def test_a_future_date_needs_allow_future_and_never_passes_year_9998(settings):
    from connector.billing_jobs import today_in

    env = {"DATABASE_URL": settings.database_url, "BILLSYNC_TIMEZONE": "Pacific/Kiritimati"}
    today = today_in("Pacific/Kiritimati")
    ahead = today + timedelta(days=10)
    code, output = run(["bill-run", "--as-of", ahead.isoformat()], env)
    assert code == 2
    assert output.splitlines() == [
        f"error: --as-of: {ahead} is 10 days after today ({today} in Pacific/Kiritimati); pass --allow-future "
        "to bill ahead on purpose, or --dry-run to see what it would bill"]
    # Tomorrow is fine (a person ahead of the org's time zone), and so is a deliberate future date.
    for args in (["--as-of", (today + timedelta(days=1)).isoformat()],
                 ["--as-of", ahead.isoformat(), "--allow-future"]):
        code, output = run(["bill-run", *args], env)
        assert code == 0, output
    for args in (["--as-of", "9999-12-31", "--allow-future"], ["--as-of", "9999-12-31", "--dry-run"]):
        code, output = run(["bill-run", *args], env)
        assert code == 2
        assert output.splitlines() == [
            "error: --as-of: 9999-12-31 is after 9998-12-31, the latest date a bill run accepts"]


def test_a_far_future_run_finalizes_nothing_spanning_many_periods(pulled):
    services, env = pulled
    code, output = run(["bill-run", "--as-of", "2099-12-31", "--allow-future"], env)
    assert code == 0, output
    assert "invoices held for review: covering more than 3 periods" in output
    assert "failed" not in output.replace("0 failed", "")
    with Session(services.engine) as session:
        invoices = session.exec(select(Invoice)).all()
        assert invoices
        for inv in invoices:
            if inv.status != "draft":
                assert recurring_periods_of(session, inv.id) <= 3, inv


def row_counts(engine):
    from sqlalchemy import func
    from sqlalchemy import select as sa_select

    from connector.database import load_all_models

    with engine.connect() as conn:
        return {t.name: conn.execute(sa_select(func.count()).select_from(t)).scalar_one()
                for t in load_all_models().metadata.sorted_tables}


def test_dry_run_prints_what_would_be_invoiced_and_writes_nothing(pulled):
    services, env = pulled
    before = row_counts(services.engine)
    assert before["customers"] and before["subscriptions"]
    code, output = run(["bill-run", "--as-of", "2026-11-24", "--dry-run"], env)
    assert code == 0, output
    assert row_counts(services.engine) == before
    lines = output.splitlines()
    headers = [ln for ln in lines if ln.startswith("customer ")]
    assert len(headers) == 12
    assert sum("would be finalized" in h for h in headers) == 2
    assert sum("would be held for review: covers" in h for h in headers) == 10
    assert any(ln.startswith("  net ") and "= total" in ln for ln in lines)
    assert any(ln.startswith("      ") for ln in lines), "each line's explanation is printed"
    assert ("dry run as of 2026-11-24, nothing written: 12 invoices would be created (2 finalized, "
            "10 held for review), 0 credit notes") in lines
    totals = dict(reversed(t.split(" ")) for t in lines[lines.index(next(ln for ln in lines
                                                                         if ln.startswith("totals: ")))]
                  .removeprefix("totals: ").split(", "))
    assert set(totals) == {"EUR", "USD", "JPY"}
    assert "customers: 12 would be billed, 0 failed" in lines

    # The real run creates exactly what the dry run announced.
    code, output = run(["bill-run", "--as-of", "2026-11-24"], env)
    assert code == 0, output
    with Session(services.engine) as session:
        invoices = session.exec(select(Invoice)).all()
    real: dict[str, Decimal] = {}
    for inv in invoices:
        real[inv.currency] = real.get(inv.currency, Decimal(0)) + inv.total
    assert {c: Decimal(v) for c, v in totals.items()} == real
