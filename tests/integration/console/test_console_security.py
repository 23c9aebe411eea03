"""Sign-in, roles, CSRF, lock-out and security headers of the web console (docs/console.md *Security*)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector import create_app
from connector.console import users
from tests.integration.console.conftest import PASSWORD, csrf_token, sign_in
from tests.support.api import bearer, new_key


def test_console_pages_need_a_signed_in_user(client):
    response = client.get("/invoices/1")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in?next=%2Finvoices%2F1")
    assert client.get("/").headers["Location"] == "/sign-in"


def test_console_pages_carry_the_security_headers(client):
    headers = client.get("/sign-in").headers
    policy = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in headers
    behind_tls = client.get("/sign-in", headers={"X-Forwarded-Proto": "https"}).headers
    assert behind_tls["Strict-Transport-Security"].startswith("max-age=")
    assert "Content-Security-Policy" in client.get("/console/static/console.css").headers


def test_the_session_cookie_is_http_only_and_same_site(client):
    response = sign_in(client, "fin@example.com")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_a_console_form_needs_its_csrf_token_but_the_api_does_not(app, finance):
    refused = finance.post("/invoices/1/payments", data={"amount": "10.00", "received_on": "2026-02-10"})
    assert refused.status_code == 400
    assert "The form has expired" in refused.get_data(as_text=True)
    key = new_key(app, "bot", "write")
    paid = app.test_client().post("/api/v1/payments", headers=bearer(key), json={
        "customer_id": "cus-a", "amount": {"amount": "10.00", "currency": "EUR"}, "received_on": "2026-02-10"})
    assert paid.status_code == 201, paid.get_data(as_text=True)


def test_a_viewer_gets_403_on_an_action(viewer):
    response = viewer.post("/invoices/1/payments", data={
        "amount": "10.00", "received_on": "2026-02-10", "csrf_token": csrf_token(viewer, "/invoices/1")})
    assert response.status_code == 403
    assert "Your role does not allow this action." in response.get_data(as_text=True)


def test_wrong_passwords_lock_the_user_in_every_process(app, settings):
    client = app.test_client()
    for _ in range(4):
        assert sign_in(client, "fin@example.com", "wrong password!").status_code == 401
    locked = sign_in(client, "fin@example.com", "wrong password!")
    assert "this account is locked for 15 minutes" in locked.get_data(as_text=True)
    other_process = create_app(settings).test_client()
    refused = sign_in(other_process, "fin@example.com", PASSWORD)
    assert refused.status_code == 401 and "locked" in refused.get_data(as_text=True)
    engine = app.extensions["billsync"].engine
    later = datetime.now(UTC) + timedelta(minutes=16)
    assert users.authenticate(engine, "fin@example.com", PASSWORD, now=later, attempts=5,
                              lockout=timedelta(minutes=15)).user is not None


def test_unknown_and_wrong_get_the_same_answer(client):
    unknown = sign_in(client, "nobody@example.com", PASSWORD)
    wrong = sign_in(client, "fin@example.com", "wrong password!")
    assert unknown.status_code == wrong.status_code == 401
    assert "Wrong e-mail address or password." in unknown.get_data(as_text=True)
    assert "Wrong e-mail address or password." in wrong.get_data(as_text=True)


def test_a_disabled_user_is_signed_out(app, finance):
    assert finance.get("/invoices/").status_code == 200
    users.disable_user(app.extensions["billsync"].engine, "fin@example.com", now=datetime.now(UTC))
    assert finance.get("/invoices/").status_code == 302
    assert sign_in(app.test_client(), "fin@example.com").status_code == 401


def test_sign_in_goes_back_only_to_this_site(client):
    token = csrf_token(client)
    response = client.post("/sign-in", data={"email": "fin@example.com", "password": PASSWORD,
                                             "csrf_token": token, "next": "https://evil.example/x"})
    assert response.headers["Location"] == "/"


def test_the_api_and_the_probes_carry_no_console_cookie(app, client):
    key = new_key(app, "reader", "read")
    for response in (client.get("/healthz"), client.get("/api/v1/invoices", headers=bearer(key))):
        assert response.status_code == 200
        assert "Set-Cookie" not in response.headers
        assert "Content-Security-Policy" not in response.headers


def test_an_unknown_page_is_a_console_page_for_a_browser_and_json_elsewhere(finance):
    page = finance.get("/invoices/not-a-number", headers={"Accept": "text/html"})
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "There is no such page." in page.get_data(as_text=True)
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    api = finance.get("/nowhere", headers={"Accept": "application/json"})
    assert api.status_code == 404 and api.is_json


def test_after_sign_in_only_a_page_of_this_site_is_opened(app):
    for target, lands in (("/invoices/1", "/invoices/1"), ("/%5Cevil.example", "/"), ("/\\evil.example", "/"),
                          ("//evil.example", "/"), ("https://evil.example/", "/"), ("/\tevil", "/")):
        client = app.test_client()
        response = client.post("/sign-in", data={"email": "fin@example.com", "password": PASSWORD,
                                                  "next": target.replace("%5C", "\\"),
                                                  "csrf_token": csrf_token(client)})
        assert response.status_code == 303, target
        assert response.headers["Location"] == lands, target
