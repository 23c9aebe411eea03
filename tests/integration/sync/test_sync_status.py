"""``billsync sync status`` starts with what billsync holds: its customers and subscriptions."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import update
from sqlmodel import Session

from billing_engine.storage.subscriptions import SubscriptionRow
from connector.cli import cli
from tests.support.billing import seed


def status(database_url: str) -> list[str]:
    result = CliRunner().invoke(cli, ["sync", "status"], env={"DATABASE_URL": database_url, "SF_AUTH": "none"})
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_sync_status_counts_the_customers_and_subscriptions_billsync_holds(engine, database_url):
    assert status(database_url)[:2] == ["billsync holds", "  0 customers, 0 subscriptions"]

    seed(engine, {"c1": "EUR", "c2": "USD", "c3": "JPY"}, {"s1": "c1", "s2": "c1", "s3": "c2"})
    with Session(engine) as session, session.begin():
        session.execute(update(SubscriptionRow).where(SubscriptionRow.id == "s2").values(status="cancelled"))
    lines = status(database_url)
    assert lines[:3] == ["billsync holds", "  3 customers, 3 subscriptions (1 cancelled)", "Salesforce"]
