"""SOQL through query/queryAll: the subset, escapes, errors, and nextRecordsUrl paging."""

from __future__ import annotations

import pytest
from simple_salesforce import format_soql
from simple_salesforce.exceptions import SalesforceMalformedRequest


def _bulk_accounts(sf, count):
    for start in range(0, count, 200):
        records = [{"attributes": {"type": "Account"}, "Name": f"Acct {i:05d}", "Billsync_Customer_Id__c": f"c{i}"}
                   for i in range(start, min(start + 200, count))]
        results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
        assert all(r["success"] for r in results)


def test_paging_across_5000_records(sf, sandbox):
    _bulk_accounts(sf, 5000)
    first = sf.query("SELECT Id, Name FROM Account ORDER BY Name")
    assert first["totalSize"] == 5000 and first["done"] is False and len(first["records"]) == 2000
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert second["totalSize"] == 5000 and len(second["records"]) == 2000
    third = sf.query_more(second["nextRecordsUrl"], identifier_is_url=True)
    assert third["done"] is True and "nextRecordsUrl" not in third and len(third["records"]) == 1000
    names = [r["Name"] for r in first["records"] + second["records"] + third["records"]]
    assert names == [f"Acct {i:05d}" for i in range(5000)]
    everything = sf.query_all("SELECT Id FROM Account")
    assert everything["totalSize"] == 5000 and len(everything["records"]) == 5000
    # the continuation is also accepted under queryAll/
    locator = first["nextRecordsUrl"].rsplit("/", 1)[1]
    again = sf.restful(f"queryAll/{locator}")
    assert [r["Id"] for r in again["records"]] == [r["Id"] for r in second["records"]]


def test_query_all_includes_deleted_records(sf):
    keep = sf.Account.create({"Name": "Keep"})["id"]
    gone = sf.Account.create({"Name": "Gone"})["id"]
    sf.Account.delete(gone)
    assert [r["Id"] for r in sf.query("SELECT Id FROM Account")["records"]] == [keep]
    rows = sf.query_all("SELECT Id, IsDeleted FROM Account ORDER BY Name", include_deleted=True)["records"]
    assert [(r["Id"], r["IsDeleted"]) for r in rows] == [(gone, True), (keep, False)]


def test_escaped_quotes_and_backslashes_match(sf):
    name = "O'Brien \\ \"Ltd\"\n"
    account_id = sf.Account.create({"Name": name})["id"]
    sf.Account.create({"Name": "Other"})
    rows = sf.query(format_soql("SELECT Id, Name FROM Account WHERE Name = {}", name))["records"]
    assert [(r["Id"], r["Name"]) for r in rows] == [(account_id, name)]
    like = sf.query(format_soql("SELECT Id FROM Account WHERE Name LIKE '{:like}%'", "O'Bri"))["records"]
    assert [r["Id"] for r in like] == [account_id]


@pytest.mark.parametrize(("soql", "code"), [
    ("SELECT Id FROM Account WHERE", "MALFORMED_QUERY"),
    ("SELECT Id FROM Account WHERE Name = 'a\\x'", "MALFORMED_QUERY"),
    ("SELEC Id FROM Account", "MALFORMED_QUERY"),
    ("SELECT Nope__c FROM Account", "INVALID_FIELD"),
    ("SELECT Id FROM Nope__c", "INVALID_TYPE"),
])
def test_bad_queries_are_400_with_the_salesforce_error_code(sf, soql, code):
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query(soql)
    assert err.value.status == 400 and err.value.content[0]["errorCode"] == code
    assert err.value.content[0]["message"]


def test_parent_fields_child_subqueries_and_count(sandbox, sf):
    sandbox.seed("small")
    rows = sf.query("SELECT Name, Account.Name, SyncedQuote.TotalPrice, "
                    "(SELECT Name FROM Quotes) FROM Opportunity WHERE IsWon = true ORDER BY Name")["records"]
    assert len(rows) == 12
    assert all(r["Account"]["Name"] and r["Quotes"]["totalSize"] >= 1 for r in rows)
    count = sf.query("SELECT COUNT() FROM Opportunity WHERE IsClosed = true")
    assert count["records"] == [] and count["totalSize"] == sum(
        1 for r in sf.query_all("SELECT IsClosed FROM Opportunity")["records"] if r["IsClosed"])


def test_a_missing_query_is_malformed(sf):
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("query", params={"q": ""})
