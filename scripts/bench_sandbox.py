#!/usr/bin/env python
"""Benchmark the local Salesforce sandbox (prints figures; not a timed test).

    .venv/bin/python scripts/bench_sandbox.py [--data large|small] [--runs 20]

Measures: start-up with the demo data, large seed generation, a 2,000-Account query
over real HTTPS through simple-salesforce (target < 200 ms), paging the whole Account
table, collection upserts, and the API calls each workload costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simple_salesforce import Salesforce  # noqa: E402

from sfsandbox.server import SandboxServer  # noqa: E402


def timed(fn, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), max(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["small", "large"], default="large")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="sandbox-bench-"))

    started = time.perf_counter()
    with SandboxServer(state_dir=state, data="small"):
        print(f"start with --data small (in process): {time.perf_counter() - started:.2f} s")

    started = time.perf_counter()
    server = SandboxServer(state_dir=state, data=args.data).start()
    print(f"start with --data {args.data}: {time.perf_counter() - started:.2f} s  "
          f"records: {sum(server.stats()['records'].values()):,}")
    try:
        sf = Salesforce(instance_url=server.url, session_id=server.issue_token()["access_token"],
                        session=server.requests_session(), version="59.0", parse_float=Decimal)
        soql = ("SELECT Id, Name, CurrencyIsoCode, BillingCity, BillingCountry, Tax_Rate__c, Billsync_Customer_Id__c "
                "FROM Account LIMIT 2000")
        rows = sf.query(soql)
        assert len(rows["records"]) == min(2000, server.store.count("Account"))
        median, worst = timed(lambda: sf.query(soql), args.runs)
        print(f"query 2,000 Accounts over HTTPS: median {median:.1f} ms, max {worst:.1f} ms "
              f"({args.runs} runs; target < 200 ms)")

        filtered = "SELECT Id, Name FROM Account WHERE CurrencyIsoCode = 'EUR' ORDER BY Name LIMIT 2000"
        median, worst = timed(lambda: sf.query(filtered), max(3, args.runs // 4))
        print(f"query 2,000 EUR Accounts ORDER BY Name: median {median:.1f} ms, max {worst:.1f} ms")

        before = server.api_calls
        started = time.perf_counter()
        total = sum(1 for _ in sf.query_all_iter("SELECT Id, Name FROM Account"))
        elapsed = time.perf_counter() - started
        print(f"page through all {total:,} Accounts (2,000 a page): {elapsed:.2f} s, "
              f"{server.api_calls - before} API calls")

        before = server.api_calls
        started = time.perf_counter()
        won = sf.query_all("SELECT Id, Amount, SyncedQuoteId, (SELECT Id FROM Quotes) FROM Opportunity "
                           "WHERE IsWon = true")
        print(f"pull won Opportunities with quotes: {won['totalSize']:,} rows in "
              f"{time.perf_counter() - started:.2f} s, {server.api_calls - before} API calls")

        before = server.api_calls
        started = time.perf_counter()
        for batch in range(10):
            records = [{"attributes": {"type": "Invoice__c"}, "Billsync_Invoice_Id__c": f"inv_{batch}_{i}",
                        "Name": f"INV-{batch}-{i}", "Total__c": "100.00", "CurrencyIsoCode": "EUR"}
                       for i in range(200)]
            results = sf.restful("composite/sobjects/Invoice__c/Billsync_Invoice_Id__c", method="PATCH",
                                 json={"allOrNone": False, "records": records})
            assert all(r["success"] for r in results)
        elapsed = time.perf_counter() - started
        print(f"upsert 2,000 invoices in 10 collection calls: {elapsed:.2f} s "
              f"({2000 / elapsed:,.0f} records/s), {server.api_calls - before} API calls")
        print(f"API calls made in this run: {server.api_calls}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
