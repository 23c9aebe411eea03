"""``billsync payments late-charges``: interest and the fixed indemnity of an overdue invoice, computed
on demand (docs/payments.md, "Late charges")."""

from __future__ import annotations

from click.testing import CliRunner

from connector.cli import cli
from connector.settings import load_settings
from connector.wiring import build_services
from tests.support.collections import invoiced_customers, invoices_by_customer


def test_late_charges_of_an_overdue_invoice(database_url):
    engine = build_services(load_settings({"DATABASE_URL": database_url})).engine
    [cid] = invoiced_customers(engine, 1, lines=1)  # 10.00 + 20 % tax = 12.00, due 2026-12-01
    assert invoices_by_customer(engine)[cid].total == 12
    runner = CliRunner()
    env = {"DATABASE_URL": database_url, "LATE_INTEREST_RATE": "12.15"}
    result = runner.invoke(cli, ["payments", "late-charges", "INV-2026-000001", "--as-of", "2027-03-01"], env=env)
    assert result.exit_code == 0, result.output
    # 12.00 × 12.15 % × 90/365 = 0.3595… → 0.36, plus the fixed 40.00 indemnity.
    assert result.output.splitlines() == [
        "invoice INV-2026-000001 on 2027-03-01: balance 12.00 EUR, due 2026-12-01, 90 days late",
        "interest 0.36 EUR + indemnity 40.00 EUR = 40.36 EUR (12.00 × 12.15 % × 90/365 days = 0.36 EUR; fixed "
        "recovery indemnity 40.00 EUR)"]
    by_id = runner.invoke(cli, ["payments", "late-charges", "1", "--as-of", "2027-03-01", "--rate", "3"], env=env)
    assert "interest 0.09 EUR" in by_id.output
    no_rate = runner.invoke(cli, ["payments", "late-charges", "1"], env={"DATABASE_URL": database_url})
    assert no_rate.exit_code == 2 and "LATE_INTEREST_RATE is not set" in no_rate.output
    unknown = runner.invoke(cli, ["payments", "late-charges", "INV-2026-999999"], env=env)
    assert unknown.exit_code == 2 and "invoice 'INV-2026-999999' not found" in unknown.output
