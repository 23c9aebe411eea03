"""The sandbox SOQL engine: results and errors as a simple-salesforce user would see them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from simple_salesforce import format_soql

from sfsandbox.soql import FieldDef, SoqlError, execute, parse

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
HOSTILE = "O'Brien\\' OR Name != '"


def _to18(id15: str) -> str:
    suffix = ""
    for i in range(3):
        bits = 0
        for j, c in enumerate(id15[i * 5 : (i + 1) * 5]):
            if "A" <= c <= "Z":
                bits |= 1 << j
        suffix += "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"[bits]
    return id15 + suffix


def rid(prefix: str, n: int) -> str:
    return _to18(f"{prefix}Ab0000000{n:03d}")


SYSTEM = [
    FieldDef("Id", "id"),
    FieldDef("IsDeleted", "boolean"),
    FieldDef("CreatedDate", "datetime"),
    FieldDef("LastModifiedDate", "datetime"),
    FieldDef("SystemModstamp", "datetime"),
]


def ref(name: str, to: str, rel: str) -> FieldDef:
    return FieldDef(name, "reference", reference_to=to, relationship_name=rel)


OBJECTS: dict[str, list[FieldDef]] = {
    "User": [FieldDef("Name", "string"), FieldDef("Email", "email")],
    "Account": [
        FieldDef("Name", "string"),
        FieldDef("Industry", "picklist"),
        FieldDef("AnnualRevenue", "currency"),
        FieldDef("NumberOfEmployees", "int"),
        FieldDef("Description", "textarea"),
        FieldDef("Active__c", "boolean"),
        ref("OwnerId", "User", "Owner"),
        ref("ParentId", "Account", "Parent"),
    ],
    "Contact": [
        FieldDef("LastName", "string"),
        FieldDef("Email", "email"),
        FieldDef("Birthdate", "date"),
        ref("AccountId", "Account", "Account"),
    ],
    "Opportunity": [
        FieldDef("Name", "string"),
        FieldDef("StageName", "picklist"),
        FieldDef("CloseDate", "date"),
        FieldDef("Amount", "currency"),
        ref("AccountId", "Account", "Account"),
    ],
    "Quote": [FieldDef("Name", "string"), ref("OpportunityId", "Opportunity", "Opportunity")],
    "QuoteLineItem": [
        FieldDef("Quantity", "double"),
        FieldDef("UnitPrice", "currency"),
        FieldDef("Discount", "percent"),
        ref("QuoteId", "Quote", "Quote"),
    ],
    "Order": [FieldDef("Status", "picklist"), ref("AccountId", "Account", "Account")],
    "OrderItem": [FieldDef("Quantity", "double"), ref("OrderId", "Order", "Order")],
}
CHILDREN = {
    ("Account", "contacts"): ("Contact", "AccountId"),
    ("Account", "opportunities"): ("Opportunity", "AccountId"),
    ("Opportunity", "quotes"): ("Quote", "OpportunityId"),
    ("Quote", "quotelineitems"): ("QuoteLineItem", "QuoteId"),
}


class Schema:
    def object_name(self, name):
        return next((o for o in OBJECTS if o.lower() == name.lower()), None)

    def fields(self, obj):
        return SYSTEM + OBJECTS[obj]

    def field(self, obj, name):
        return next((f for f in self.fields(obj) if f.name.lower() == name.lower()), None)

    def child(self, obj, relationship_name):
        return CHILDREN.get((obj, relationship_name.lower()))


class Source:
    def __init__(self, data):
        self.data = data

    def scan(self, obj, include_deleted):
        return [r for r in self.data.get(obj, []) if include_deleted or not r["IsDeleted"]]

    def get(self, obj, record_id):
        return next((r for r in self.data.get(obj, []) if r["Id"] == record_id), None)

    def children(self, obj, fk_field, parent_id, include_deleted):
        return [r for r in self.scan(obj, include_deleted) if r.get(fk_field) == parent_id]


def rec(obj_prefix: str, n: int, created: str = "2026-11-01T09:00:00.000+0000", **fields):
    base = {
        "Id": rid(obj_prefix, n),
        "IsDeleted": False,
        "CreatedDate": created,
        "LastModifiedDate": created,
        "SystemModstamp": created,
    }
    base.update(fields)
    return base


U1, U2 = rid("005", 1), rid("005", 2)
A1, A2, A3, A4, A5 = (rid("001", n) for n in range(1, 6))
O1, O2, O3, O4, O5, O6 = (rid("006", n) for n in range(1, 7))
Q1, Q2 = rid("0Q0", 1), rid("0Q0", 2)


def dataset():
    return {
        "User": [rec("005", 1, Name="Ursula Owner"), rec("005", 2, Name="Bob Builder")],
        "Account": [
            rec(
                "001",
                1,
                created="2026-11-20T10:00:00.000+0000",
                Name="Acme Corp",
                Industry="Technology",
                AnnualRevenue=Decimal("1000000.00"),
                NumberOfEmployees=50,
                Active__c=True,
                OwnerId=U1,
                ParentId=None,
                Description="line1\nline2",
            ),
            rec(
                "001",
                2,
                created="2026-11-24T08:00:00.000+0000",
                Name="acme labs",
                Industry=None,
                AnnualRevenue=Decimal("250.50"),
                NumberOfEmployees=5,
                Active__c=False,
                OwnerId=U2,
                ParentId=A1,
                Description="tab\there, quote \" and 'single' and back\\slash, caf\u00e9\r\b\f",
            ),
            rec(
                "001",
                3,
                Name=HOSTILE,
                Industry="Retail",
                AnnualRevenue=None,
                NumberOfEmployees=None,
                Active__c=False,
            ),
            rec(
                "001",
                4,
                Name="100% Pure_Water",
                Industry="Retail",
                AnnualRevenue=Decimal("0"),
                NumberOfEmployees=7,
                Active__c=True,
            ),
            rec("001", 5, IsDeleted=True, Name="Deleted Co", Industry="Technology", Active__c=False),
        ],
        "Contact": [
            rec("003", 1, LastName="Smith", AccountId=A1, Birthdate="1980-05-17"),
            rec("003", 2, LastName="jones", AccountId=A2, Birthdate=None),
            rec("003", 3, LastName="Adams", AccountId=None, Birthdate="1990-01-01"),
        ],
        "Opportunity": [
            rec(
                "006",
                1,
                Name="Today deal",
                StageName="Closed Won",
                CloseDate="2026-11-24",
                Amount=Decimal("500.00"),
                AccountId=A1,
            ),
            rec(
                "006",
                2,
                Name="Yesterday deal",
                StageName="Prospecting",
                CloseDate="2026-11-23",
                Amount=None,
                AccountId=A1,
            ),
            rec(
                "006",
                3,
                Name="December deal",
                StageName="Negotiation",
                CloseDate="2026-12-05",
                Amount=Decimal("1500"),
                AccountId=A2,
            ),
            rec(
                "006",
                4,
                Name="October deal",
                StageName="Closed Won",
                CloseDate="2026-10-31",
                Amount=Decimal("10"),
                AccountId=None,
            ),
            rec(
                "006",
                5,
                Name="Last year deal",
                StageName="Closed Lost",
                CloseDate="2025-12-31",
                Amount=Decimal("1"),
                AccountId=A3,
            ),
            rec(
                "006",
                6,
                Name="Next week deal",
                StageName="Prospecting",
                CloseDate="2026-11-30",
                Amount=Decimal("2"),
                AccountId=A4,
            ),
            rec(
                "006",
                7,
                IsDeleted=True,
                Name="Deleted deal",
                StageName="Closed Won",
                CloseDate="2026-11-24",
                Amount=Decimal("9"),
                AccountId=A2,
            ),
        ],
        "Order": [
            rec("801", 1, Status="Draft", AccountId=A1),
            rec("801", 2, Status="Activated", AccountId=A2),
        ],
        "OrderItem": [
            rec("802", 1, Quantity=Decimal("1"), OrderId=rid("801", 2)),
            rec("802", 2, Quantity=Decimal("3"), OrderId=rid("801", 1)),
        ],
        "Quote": [
            rec("0Q0", 1, Name="Q-Today", OpportunityId=O1),
            rec("0Q0", 2, Name="Q-Empty", OpportunityId=O3),
        ],
        "QuoteLineItem": [
            rec("0QL", 1, QuoteId=Q1, Quantity=Decimal("2"), UnitPrice=Decimal("10.00"), Discount=None),
            rec(
                "0QL", 2, QuoteId=Q1, Quantity=Decimal("5"), UnitPrice=Decimal("1.25"), Discount=Decimal("10")
            ),
            rec("0QL", 3, QuoteId=Q1, Quantity=Decimal("1"), UnitPrice=Decimal("99"), Discount=None),
            rec(
                "0QL",
                4,
                QuoteId=Q1,
                IsDeleted=True,
                Quantity=Decimal("7"),
                UnitPrice=Decimal("1"),
                Discount=None,
            ),
        ],
    }


@pytest.fixture
def run():
    source = Source(dataset())
    schema = Schema()

    def _run(soql, **kw):
        return execute(soql, schema, source, now=NOW, **kw)

    return _run


def names(result, key="Name"):
    return [r[key] for r in result.records]


def nameset(result, key="Name"):
    return set(names(result, key))


def error(run, soql, **kw) -> SoqlError:
    with pytest.raises(SoqlError) as info:
        run(soql, **kw)
    return info.value


# --------------------------------------------------------------------------- shape


def test_records_have_attributes_and_fields_in_select_order_with_canonical_names(run):
    result = run("select annualrevenue, NAME, id from ACCOUNT where name = 'Acme Corp'")
    assert result.object_name == "Account"
    assert result.total_size == 1 and not result.is_count
    [r] = result.records
    assert list(r) == ["attributes", "AnnualRevenue", "Name", "Id"]
    assert r["attributes"] == {"type": "Account", "url": f"/services/data/v59.0/sobjects/Account/{A1}"}
    assert r["AnnualRevenue"] == Decimal("1000000.00") and isinstance(r["AnnualRevenue"], Decimal)
    assert str(r["AnnualRevenue"]) == "1000000.00"


def test_api_version_goes_into_urls(run):
    r = run("SELECT Id, Account.Name FROM Contact WHERE LastName = 'Smith'", api_version="52.0").records[0]
    assert r["attributes"]["url"].startswith("/services/data/v52.0/sobjects/Contact/")
    assert r["Account"]["attributes"]["url"] == f"/services/data/v52.0/sobjects/Account/{A1}"


def test_values_are_returned_as_stored(run):
    [r] = run(
        "SELECT CreatedDate, Active__c, NumberOfEmployees, Industry FROM Account WHERE Name = 'acme labs'"
    ).records
    assert r["CreatedDate"] == "2026-11-24T08:00:00.000+0000"
    assert r["Active__c"] is False
    assert r["NumberOfEmployees"] == 5
    assert r["Industry"] is None


# --------------------------------------------------------------------------- comparison operators


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Name = 'ACME CORP'", {"Acme Corp"}),
        ("Industry != 'Retail'", {"Acme Corp", "acme labs"}),  # != also matches nulls
        ("AnnualRevenue > 250.50", {"Acme Corp"}),
        ("AnnualRevenue >= 250.5", {"Acme Corp", "acme labs"}),
        ("AnnualRevenue < 250.50", {"100% Pure_Water"}),  # null is never < anything
        ("AnnualRevenue <= 250.50", {"100% Pure_Water", "acme labs"}),
        ("AnnualRevenue = 0", {"100% Pure_Water"}),
        ("NumberOfEmployees >= 7", {"Acme Corp", "100% Pure_Water"}),
        ("NumberOfEmployees > -1 AND NumberOfEmployees < 6", {"acme labs"}),
        ("Active__c = true", {"Acme Corp", "100% Pure_Water"}),
        ("Active__c = FALSE", {"acme labs", HOSTILE}),
        ("Industry IN ('retail', 'TECHNOLOGY')", {"Acme Corp", HOSTILE, "100% Pure_Water"}),
        ("Industry NOT IN ('Retail')", {"Acme Corp", "acme labs"}),
        ("Industry IN ('Technology', null)", {"Acme Corp", "acme labs"}),
        ("AnnualRevenue IN (0, 250.5)", {"acme labs", "100% Pure_Water"}),
        ("Industry = null", {"acme labs"}),
        ("Industry != null", {"Acme Corp", HOSTILE, "100% Pure_Water"}),
        ("AnnualRevenue = null", {HOSTILE}),
        ("AnnualRevenue != 0", {"Acme Corp", "acme labs", HOSTILE}),
        ("AnnualRevenue NOT IN (0, 250.50)", {"Acme Corp", HOSTILE}),
        ("OwnerId != null", {"Acme Corp", "acme labs"}),
        ("Name > 'B'", {HOSTILE}),  # case-insensitive ordering: 'acme labs' < 'b'
        ("Name < 'acme d'", {"Acme Corp", "100% Pure_Water"}),
    ],
)
def test_comparison_operators(run, where, expected):
    assert nameset(run(f"SELECT Name FROM Account WHERE {where}")) == expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("'acme%'", {"Acme Corp", "acme labs"}),
        ("'%CORP'", {"Acme Corp"}),
        ("'Acme_Corp'", {"Acme Corp"}),
        ("'Acme_Cor'", set()),  # the whole value must match
        ("'%\\%%'", {"100% Pure_Water"}),  # \% is a literal percent sign
        ("'%\\_%'", {"100% Pure_Water"}),  # \_ is a literal underscore
        ("'100\\% pure\\_water'", {"100% Pure_Water"}),
        ("'acme\\_%'", set()),
        ("'%.%'", set()),  # regex characters are literal
    ],
)
def test_like(run, pattern, expected):
    assert nameset(run(f"SELECT Name FROM Account WHERE Name LIKE {pattern}")) == expected


def test_not_like_and_null_values(run):
    # a null value never matches LIKE, so NOT ... LIKE matches it
    got = nameset(run("SELECT Name FROM Account WHERE NOT Industry LIKE 'tech%'"))
    assert got == {"acme labs", HOSTILE, "100% Pure_Water"}


def test_like_pattern_from_format_soql(run):
    soql = format_soql("SELECT Name FROM Account WHERE Name LIKE '{:like}%'", "100% Pure_")
    assert nameset(run(soql)) == {"100% Pure_Water"}


def test_logical_operators_and_parentheses(run):
    q = "SELECT Name FROM Account WHERE (Industry = 'Retail' OR Industry = null) AND NOT (AnnualRevenue = null)"
    assert nameset(run(q)) == {"acme labs", "100% Pure_Water"}
    q = "SELECT Name FROM Account WHERE Industry = 'Retail' AND (NOT Active__c = true)"
    assert nameset(run(q)) == {HOSTILE}
    q = "SELECT Name FROM Account WHERE Name = 'Acme Corp' OR Name = 'acme labs' OR Name = 'nobody'"
    assert nameset(run(q)) == {"Acme Corp", "acme labs"}


def test_mixing_and_or_without_parentheses_is_malformed(run):
    e = error(run, "SELECT Id FROM Account WHERE Name = 'a' AND Name = 'b' OR Name = 'c'")
    assert e.error_code == "MALFORMED_QUERY"
    assert "unexpected token: 'OR'" in e.message


def test_id_filters_accept_15_and_18_character_ids(run):
    assert nameset(run(f"SELECT Name FROM Account WHERE Id = '{A2}'")) == {"acme labs"}
    assert nameset(run(f"SELECT Name FROM Account WHERE Id = '{A2[:15]}'")) == {"acme labs"}
    assert nameset(run(f"SELECT Name FROM Account WHERE Id IN ('{A1[:15]}', '{A4}')")) == {
        "Acme Corp",
        "100% Pure_Water",
    }


# --------------------------------------------------------------------------- string literals


@pytest.mark.parametrize(
    "literal",
    [
        "'line1\\nline2'",
        "'LINE1\\NLINE2'",
    ],
)
def test_newline_escapes(run, literal):
    assert nameset(run(f"SELECT Name FROM Account WHERE Description = {literal}")) == {"Acme Corp"}


@pytest.mark.parametrize("upper", [False, True])
def test_every_escape_sequence_decodes(run, upper):
    body = "tab\\there, quote \\\" and \\'single\\' and back\\\\slash, caf\\u00e9\\r\\b\\f"
    if upper:
        body = body.replace("\\t", "\\T").replace("\\r", "\\R").replace("\\b", "\\B").replace("\\f", "\\F")
    assert nameset(run(f"SELECT Name FROM Account WHERE Description = '{body}'")) == {"acme labs"}


def test_format_soql_escaping_round_trips(run):
    soql = format_soql(
        "SELECT Name FROM Account WHERE Description = {}",
        "tab\there, quote \" and 'single' and back\\slash, caf\u00e9\r\b\f",
    )
    assert nameset(run(soql)) == {"acme labs"}


def test_hostile_name_from_format_soql_matches_only_itself(run):
    soql = format_soql("SELECT Id, Name FROM Account WHERE Name = {}", HOSTILE)
    result = run(soql)
    assert names(result) == [HOSTILE]
    assert names(result, "Id") == [A3]


def test_bare_backslash_escape_is_malformed(run):
    q = "SELECT Id FROM Account WHERE Name = 'a\\xb'"
    e = error(run, q)
    assert e.error_code == "MALFORMED_QUERY"
    col = q.index("\\") + 1
    assert f"ERROR at Row:1:Column:{col}" in e.message
    assert "\\x" in e.message


def test_like_escapes_outside_like_are_malformed(run):
    e = error(run, "SELECT Id FROM Account WHERE Name = '100\\% Pure'")
    assert e.error_code == "MALFORMED_QUERY"


def test_unterminated_string_is_malformed(run):
    assert error(run, "SELECT Id FROM Account WHERE Name = 'abc").error_code == "MALFORMED_QUERY"


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("CloseDate = 2026-11-24", {"Today deal"}),
        ("CloseDate > 2026-11-24", {"December deal", "Next week deal"}),
        ("CloseDate = TODAY", {"Today deal"}),
        ("CloseDate = YESTERDAY", {"Yesterday deal"}),
        ("CloseDate = TOMORROW", set()),
        ("CloseDate < TODAY", {"Yesterday deal", "October deal", "Last year deal"}),
        ("CloseDate <= TODAY", {"Today deal", "Yesterday deal", "October deal", "Last year deal"}),
        ("CloseDate > TODAY", {"December deal", "Next week deal"}),
        ("CloseDate >= TODAY", {"Today deal", "December deal", "Next week deal"}),
        (
            "CloseDate != TODAY",
            {"Yesterday deal", "December deal", "October deal", "Last year deal", "Next week deal"},
        ),
        ("CloseDate = LAST_N_DAYS:1", {"Today deal", "Yesterday deal"}),
        ("CloseDate = LAST_N_DAYS:30", {"Today deal", "Yesterday deal", "October deal"}),
        ("CloseDate = NEXT_N_DAYS:6", {"Next week deal"}),
        ("CloseDate = NEXT_N_DAYS:5", set()),
        ("CloseDate = THIS_MONTH", {"Today deal", "Yesterday deal", "Next week deal"}),
        ("CloseDate = LAST_MONTH", {"October deal"}),
        ("CloseDate = NEXT_MONTH", {"December deal"}),
        (
            "CloseDate = THIS_YEAR",
            {"Today deal", "Yesterday deal", "December deal", "October deal", "Next week deal"},
        ),
        ("CloseDate < THIS_YEAR", {"Last year deal"}),
        ("CloseDate IN (YESTERDAY, NEXT_MONTH)", {"Yesterday deal", "December deal"}),
    ],
)
def test_date_field_filters(run, where, expected):
    assert nameset(run(f"SELECT Name FROM Opportunity WHERE {where}")) == expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("CreatedDate = TODAY", {"acme labs"}),
        ("CreatedDate < TODAY", {"Acme Corp", HOSTILE, "100% Pure_Water"}),
        ("CreatedDate = LAST_N_DAYS:4", {"Acme Corp", "acme labs"}),
        ("CreatedDate > 2026-11-20T10:00:00Z", {"acme labs"}),
        ("CreatedDate >= 2026-11-20T10:00:00Z", {"Acme Corp", "acme labs"}),
        ("CreatedDate = 2026-11-20T11:00:00+01:00", {"Acme Corp"}),
        ("CreatedDate = 2026-11-20T02:00:00-08:00", {"Acme Corp"}),
        ("CreatedDate = 2026-11-20T10:00:00.000+0000", {"Acme Corp"}),
        ("CreatedDate < 2026-11-20T10:00:00.001Z", {"Acme Corp", HOSTILE, "100% Pure_Water"}),
    ],
)
def test_datetime_field_filters(run, where, expected):
    assert nameset(run(f"SELECT Name FROM Account WHERE {where}")) == expected


def test_format_soql_datetime_is_accepted(run):
    soql = format_soql(
        "SELECT Name FROM Account WHERE CreatedDate >= {}", datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    )
    assert nameset(run(soql)) == {"acme labs"}


def test_date_literals_follow_now(run):
    source = Source(dataset())
    later = datetime(2026, 12, 5, 23, 59, tzinfo=UTC)
    result = execute("SELECT Name FROM Opportunity WHERE CloseDate = TODAY", Schema(), source, now=later)
    assert names(result) == ["December deal"]


# --------------------------------------------------------------------------- type mismatches


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (
            "CloseDate = 2026-11-24T00:00:00Z",
            "value of filter criterion for field 'CloseDate' must be of type date",
        ),
        ("CloseDate = '2026-11-24'", "value of filter criterion for field 'CloseDate' must be of type date"),
        (
            "CreatedDate > 2026-11-24",
            "value of filter criterion for field 'CreatedDate' must be of type dateTime",
        ),
        ("Amount = '500'", "value of filter criterion for field 'Amount' must be of type double"),
        ("Name = 5", "value of filter criterion for field 'Name' must be of type string"),
        ("IsDeleted = 'false'", "value of filter criterion for field 'IsDeleted' must be of type boolean"),
        ("Amount IN (1, '2')", "value of filter criterion for field 'Amount' must be of type double"),
    ],
)
def test_type_mismatch_is_invalid_field(run, where, message):
    e = error(run, f"SELECT Id FROM Opportunity WHERE {where}")
    assert e.error_code == "INVALID_FIELD"
    assert message in e.message


def test_like_on_a_number_field_is_rejected(run):
    assert error(run, "SELECT Id FROM Opportunity WHERE Amount LIKE '5%'").error_code == "INVALID_FIELD"


# --------------------------------------------------------------------------- relationships


def test_parent_paths_nest_and_merge(run):
    result = run(
        "SELECT LastName, Account.Name, Account.Owner.Name, account.Industry, AccountId "
        "FROM Contact ORDER BY LastName"
    )
    adams, jones, smith = result.records
    assert list(smith) == ["attributes", "LastName", "Account", "AccountId"]
    assert smith["Account"] == {
        "attributes": {"type": "Account", "url": f"/services/data/v59.0/sobjects/Account/{A1}"},
        "Name": "Acme Corp",
        "Owner": {
            "attributes": {"type": "User", "url": f"/services/data/v59.0/sobjects/User/{U1}"},
            "Name": "Ursula Owner",
        },
        "Industry": "Technology",
    }
    assert jones["Account"]["Owner"]["Name"] == "Bob Builder"
    assert adams["Account"] is None


def test_three_level_path_and_null_in_the_middle(run):
    result = run(
        "SELECT Name, Account.Parent.Name FROM Opportunity WHERE Name IN ('December deal', 'Today deal')"
    )
    by_name = {r["Name"]: r for r in result.records}
    assert by_name["December deal"]["Account"]["Parent"]["Name"] == "Acme Corp"
    assert by_name["Today deal"]["Account"]["Parent"] is None


def test_object_name_prefix_is_accepted(run):
    [r] = run("SELECT Account.Name FROM Account WHERE Account.Name = 'acme labs'").records
    assert r["Name"] == "acme labs"


def test_objects_named_like_keywords(run):
    [r] = run("SELECT Id, Account.Name FROM Order WHERE Status = 'draft' ORDER BY Status").records
    assert r["attributes"]["type"] == "Order" and r["Account"]["Name"] == "Acme Corp"
    result = run(
        "SELECT Quantity, Order.Status FROM OrderItem WHERE Order.Status != null ORDER BY Order.Status"
    )
    assert [(x["Order"]["Status"], x["Quantity"]) for x in result.records] == [
        ("Activated", Decimal("1")),
        ("Draft", Decimal("3")),
    ]


def test_where_on_parent_path(run):
    assert nameset(run("SELECT LastName FROM Contact WHERE Account.Name = 'ACME CORP'"), "LastName") == {
        "Smith"
    }
    assert nameset(run("SELECT LastName FROM Contact WHERE Account.Name = null"), "LastName") == {"Adams"}
    got = nameset(run("SELECT LastName FROM Contact WHERE Account.Owner.Name LIKE 'bob%'"), "LastName")
    assert got == {"jones"}


def test_order_by_parent_path(run):
    result = run("SELECT LastName FROM Contact ORDER BY Account.Name DESC NULLS LAST")
    assert names(result, "LastName") == ["jones", "Smith", "Adams"]


def test_child_subquery(run):
    result = run(
        "SELECT Name, (SELECT Quantity, UnitPrice, Quote.Name FROM QuoteLineItems "
        "WHERE Quantity > 1 ORDER BY Quantity DESC LIMIT 5) FROM Quote ORDER BY Name DESC"
    )
    today, empty = result.records
    assert empty["Name"] == "Q-Empty" and empty["QuoteLineItems"] is None
    block = today["QuoteLineItems"]
    assert block["totalSize"] == 2 and block["done"] is True
    first = block["records"][0]
    assert first["attributes"] == {
        "type": "QuoteLineItem",
        "url": f"/services/data/v59.0/sobjects/QuoteLineItem/{rid('0QL', 2)}",
    }
    assert [r["Quantity"] for r in block["records"]] == [Decimal("5"), Decimal("2")]
    assert first["Quote"]["Name"] == "Q-Today"


def test_child_subquery_excludes_deleted_children_unless_include_deleted(run):
    q = "SELECT Name, (SELECT Id, IsDeleted FROM QuoteLineItems) FROM Quote WHERE Name = 'Q-Today'"
    assert run(q).records[0]["QuoteLineItems"]["totalSize"] == 3
    assert run(q, include_deleted=True).records[0]["QuoteLineItems"]["totalSize"] == 4


def test_child_subquery_limit_and_offset(run):
    q = "SELECT (SELECT Quantity FROM quotelineitems ORDER BY Quantity LIMIT 1 OFFSET 1) FROM Quote WHERE Id = '{}'"
    block = run(q.format(Q1)).records[0]["quotelineitems"]
    assert [r["Quantity"] for r in block["records"]] == [Decimal("2")]


def test_two_child_subqueries(run):
    [r] = run(
        "SELECT Name, (SELECT LastName FROM Contacts), (SELECT Name FROM Opportunities ORDER BY Name) "
        "FROM Account WHERE Name = 'Acme Corp'"
    ).records
    assert [c["LastName"] for c in r["Contacts"]["records"]] == ["Smith"]
    assert [o["Name"] for o in r["Opportunities"]["records"]] == ["Today deal", "Yesterday deal"]


def test_semi_join_and_anti_join(run):
    q = "SELECT Name FROM Account WHERE Id IN (SELECT AccountId FROM Opportunity WHERE StageName = 'Closed Won')"
    assert nameset(run(q)) == {"Acme Corp"}  # the deleted Closed Won deal of acme labs does not count
    q = "SELECT Name FROM Account WHERE Id NOT IN (SELECT AccountId FROM Opportunity)"
    assert nameset(run(q)) == set()
    q = "SELECT Name FROM Account WHERE Id NOT IN (SELECT AccountId FROM Opportunity WHERE Amount > 1)"
    assert nameset(run(q)) == {HOSTILE}


# --------------------------------------------------------------------------- count, order, limit


def test_count(run):
    result = run("SELECT COUNT() FROM Opportunity WHERE StageName = 'closed won'")
    assert result.is_count and result.records == [] and result.total_size == 2
    assert run("select count() from Account").total_size == 4
    assert run("select count() from Account", include_deleted=True).total_size == 5
    assert run("SELECT COUNT() FROM Account LIMIT 2").total_size == 2


def test_order_by_nulls_first_by_default_and_nulls_last(run):
    q = "SELECT Name FROM Account ORDER BY AnnualRevenue"
    assert names(run(q)) == [HOSTILE, "100% Pure_Water", "acme labs", "Acme Corp"]
    q = "SELECT Name FROM Account ORDER BY AnnualRevenue DESC"
    assert names(run(q)) == [HOSTILE, "Acme Corp", "acme labs", "100% Pure_Water"]
    q = "SELECT Name FROM Account ORDER BY AnnualRevenue DESC NULLS LAST"
    assert names(run(q)) == ["Acme Corp", "acme labs", "100% Pure_Water", HOSTILE]
    q = "SELECT Name FROM Account ORDER BY AnnualRevenue ASC NULLS LAST"
    assert names(run(q)) == ["100% Pure_Water", "acme labs", "Acme Corp", HOSTILE]


def test_order_by_several_keys_and_case_insensitive_strings(run):
    q = "SELECT Name FROM Account ORDER BY Active__c DESC, Name"
    assert names(run(q)) == ["100% Pure_Water", "Acme Corp", "acme labs", HOSTILE]
    q = "SELECT Name FROM Account ORDER BY Name DESC"
    assert names(run(q)) == [HOSTILE, "acme labs", "Acme Corp", "100% Pure_Water"]
    q = "SELECT Name FROM Opportunity ORDER BY CloseDate DESC LIMIT 2"
    assert names(run(q)) == ["December deal", "Next week deal"]
    q = "SELECT Name FROM Account ORDER BY CreatedDate DESC, Name LIMIT 2"
    assert names(run(q)) == ["acme labs", "Acme Corp"]


def test_limit_and_offset(run):
    q = "SELECT Name FROM Opportunity ORDER BY CloseDate"
    every = names(run(q))
    assert names(run(q + " LIMIT 2")) == every[:2]
    assert names(run(q + " LIMIT 2 OFFSET 3")) == every[3:5]
    assert names(run(q + " OFFSET 4")) == every[4:]
    assert run(q + " LIMIT 2 OFFSET 3").total_size == 2
    assert run("SELECT Name FROM Opportunity LIMIT 3").total_size == 3
    unordered = names(run("SELECT Name FROM Opportunity"))
    assert names(run("SELECT Name FROM Opportunity LIMIT 2 OFFSET 3")) == unordered[3:5]
    assert run("SELECT Name FROM Opportunity LIMIT 0").records == []
    assert run(q + " OFFSET 2000").records == []


def test_offset_above_2000_is_rejected(run):
    e = error(run, "SELECT Name FROM Opportunity LIMIT 10 OFFSET 2001")
    assert e.error_code == "NUMBER_OUTSIDE_VALID_RANGE"
    assert "Maximum SOQL offset allowed is 2000" in e.message


def test_deleted_rows_only_with_include_deleted(run):
    q = "SELECT Name, IsDeleted FROM Account WHERE Industry = 'Technology'"
    assert names(run(q)) == ["Acme Corp"]
    got = {r["Name"]: r["IsDeleted"] for r in run(q, include_deleted=True).records}
    assert got == {"Acme Corp": False, "Deleted Co": True}
    assert nameset(run("SELECT Name FROM Account WHERE IsDeleted = true", include_deleted=True)) == {
        "Deleted Co"
    }


@pytest.mark.parametrize("where", ["", " WHERE Industry = 'Technology'", " LIMIT 10"])
def test_deleted_rows_are_excluded_even_if_the_source_returns_them(where):
    class Leaky(Source):
        def scan(self, obj, include_deleted):
            return list(self.data.get(obj, []))

    result = execute("SELECT Name FROM Account" + where, Schema(), Leaky(dataset()), now=NOW)
    assert "Deleted Co" not in nameset(result)


def test_a_deleted_parent_reads_as_empty_unless_include_deleted():
    data = dataset()
    data["Contact"].append(rec("003", 9, LastName="Orphan", AccountId=A5))
    q = "SELECT Account.Name FROM Contact WHERE LastName = 'Orphan'"
    assert execute(q, Schema(), Source(data), now=NOW).records[0]["Account"] is None
    got = execute(q, Schema(), Source(data), now=NOW, include_deleted=True).records[0]["Account"]
    assert got["Name"] == "Deleted Co"


# --------------------------------------------------------------------------- errors


def test_unknown_field_message_points_at_the_column(run):
    e = error(run, "SELECT Nme FROM Account")
    assert e.error_code == "INVALID_FIELD"
    assert e.message.startswith(
        "\nSELECT Nme FROM Account\n       ^\nERROR at Row:1:Column:8\nNo such column 'Nme' on entity 'Account'. "
        "If you are attempting to use a custom field, be sure to append the '__c' after the custom field name."
    )


@pytest.mark.parametrize(
    ("soql", "needle"),
    [
        ("SELECT Id FROM Account WHERE Nme = 'x'", "No such column 'Nme' on entity 'Account'"),
        ("SELECT Id FROM Account ORDER BY Nme", "No such column 'Nme' on entity 'Account'"),
        ("SELECT Account.Nme FROM Contact", "No such column 'Nme' on entity 'Account'"),
        ("SELECT Acount.Name FROM Contact", "Didn't understand relationship 'Acount' in field path"),
        ("SELECT LastName.Foo FROM Contact", "Didn't understand relationship 'LastName' in field path"),
        ("SELECT (SELECT Nme FROM Contacts) FROM Account", "No such column 'Nme' on entity 'Contact'"),
    ],
)
def test_unknown_fields_and_relationships(run, soql, needle):
    e = error(run, soql)
    assert e.error_code == "INVALID_FIELD"
    assert needle in e.message


def test_unknown_object_is_invalid_type(run):
    e = error(run, "SELECT Id FROM Acount")
    assert e.error_code == "INVALID_TYPE"
    assert "sObject type 'Acount' is not supported." in e.message
    assert "ERROR at Row:1:Column:16" in e.message


def test_unknown_child_relationship_is_invalid_type(run):
    e = error(run, "SELECT Id, (SELECT Id FROM QuoteLines) FROM Quote")
    assert e.error_code == "INVALID_TYPE"
    assert "Didn't understand relationship 'QuoteLines' in FROM part of query call" in e.message


@pytest.mark.parametrize(
    ("soql", "token"),
    [
        ("SELECT Industry FROM Account GROUP BY Industry", "GROUP"),
        ("SELECT Id FROM Account WHERE Name <> 'x'", "<>"),
        ("SELECT FIELDS(ALL) FROM Account", "FIELDS"),
        ("SELECT SUM(AnnualRevenue) FROM Account", "SUM"),
        ("SELECT COUNT(Id) FROM Account", "Id"),
        ("SELECT Id FROM Account FOR UPDATE", "FOR"),
        ("SELECT Id FROM Account WITH SECURITY_ENFORCED", "WITH"),
        ("SELECT TYPEOF Owner WHEN User THEN Name END FROM Account", "TYPEOF"),
        ("SELECT Id FROM Account WHERE Name = :name", ":"),
        ("SELECT Id, FROM Account", "FROM"),
        ("SELECT * FROM Account", "*"),
        ("SELECT Id FROM Account WHERE", "<EOF>"),
        ("SELECT Id FROM Account LIMIT -1", "-1"),
        ("SELECT Id FROM Account OFFSET 1 LIMIT 1", "LIMIT"),
        ("SELECT Id FROM Account WHERE Name NOT LIKE 'x'", "LIKE"),
        ("SELECT Id FROM Account WHERE CreatedDate > 2026-01-01T00:00:00", "2026-01-01T00:00:00"),
        ("SELECT Id FROM Account WHERE CreatedDate = THIS_FISCAL_QUARTER", "THIS_FISCAL_QUARTER"),
        ("SELECT Id, (SELECT Id, (SELECT Id FROM QuoteLineItems) FROM Quotes) FROM Opportunity", "("),
    ],
)
def test_outside_the_subset_is_malformed_with_a_caret(run, soql, token):
    e = error(run, soql)
    assert e.error_code == "MALFORMED_QUERY"
    last = e.message.rsplit("\n", 1)[-1]
    assert last == f"unexpected token: '{token}'"
    line, caret, where = e.message.split("\n")[1:4]
    col = int(where.rsplit(":", 1)[1])
    assert caret == " " * (col - 1) + "^"
    if token != "<EOF>":
        assert line[col - 1 :].startswith(token)


def test_error_position_on_a_later_line(run):
    e = error(run, "SELECT Id\nFROM Account\nWHERE Name = 'x' GROUP BY Name")
    assert "\nWHERE Name = 'x' GROUP BY Name\n                 ^\nERROR at Row:3:Column:18\n" in e.message


def test_parse_is_syntax_only():
    q = parse("SELECT Nme, Account.Name, (SELECT Id FROM Nothing) FROM Acount WHERE X = 1 ORDER BY Y LIMIT 5")
    assert q.object_name == "Acount" and q.limit == 5
    with pytest.raises(SoqlError) as info:
        parse("SELECT Id FROM Account GROUP BY Id")
    assert info.value.error_code == "MALFORMED_QUERY"
