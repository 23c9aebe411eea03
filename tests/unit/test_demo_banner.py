"""What the demo's start banner tells a new user about the cut-over."""

from __future__ import annotations

from connector.demo import banner


def test_the_banner_says_from_which_day_the_demo_bills():
    lines = banner("http://127.0.0.1:5000", "https://127.0.0.1:8443", {"BILLING_STARTS_ON": "2026-12-01"}, True)
    assert ("    billing:  from 2026-12-01 (BILLING_STARTS_ON, the cut-over): nothing before it is invoiced; "
            "MRR keeps each deal's true start") in lines


def test_without_a_cut_over_the_banner_has_no_billing_line():
    lines = banner("http://127.0.0.1:5000", None, {}, False)
    assert not any(line.lstrip().startswith("billing:") for line in lines)


def test_the_banner_shows_how_to_call_the_api_with_a_new_key():
    lines = banner("http://127.0.0.1:5000", None, {}, False)
    text = "\n".join(lines)
    assert "http://127.0.0.1:5000/api/v1/openapi.json" in text
    assert "scripts/billsync api-key create" in text and "--scope write" in text
    assert 'curl -s -H "Authorization: Bearer $KEY" http://127.0.0.1:5000/api/v1/subscriptions' in text
