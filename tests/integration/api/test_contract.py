"""The contract test: schemathesis runs every operation of /api/v1/openapi.json against the
live app (a real HTTP server on a loopback port) with seeded data and a key holding every
scope, all checks on and a bounded number of examples per operation: no 500, every response
matches the document (status, content type, headers, schema), invalid input is refused,
valid input is not, authentication is enforced."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import requests

from connector import create_app
from tests.support.api import bearer, live_server, new_key, seed_subscriptions

#: Examples per operation and phase; the whole run stays within a couple of minutes.
MAX_EXAMPLES = int(os.environ.get("API_CONTRACT_EXAMPLES", "50"))

CONFIG = """
[checks.positive_data_acceptance]
# Valid by the schema, refused by a rule the schema cannot state: an engine rule (a range ending
# before it starts, a currency that is not the customer's) is a 422; a cursor the server did not
# issue (the schema can only say it is base64url text) is a 400.
expected-statuses = ["2xx", "400", "401", "403", "404", "409", "422"]
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_api_operation_keeps_the_contract(settings, tmp_path):
    app = create_app(settings)
    seed_subscriptions(app.extensions["billsync"].engine)
    key = new_key(app, "contract", "read", "write", "usage")
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    with live_server(app) as base:
        operations = requests.get(f"{base}/api/v1/openapi.json", timeout=10).json()["paths"]
        assert operations, "the document lists no operation"
        assert requests.get(f"{base}/api/v1/subscriptions", headers=bearer(key), timeout=10).status_code == 200
        result = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color", "run",
             f"{base}/api/v1/openapi.json", "--checks", "all", "--max-examples", str(MAX_EXAMPLES),
             "--header", f"Authorization: Bearer {key}", "--seed", "20261206", "--workers", "1",
             "--request-timeout", "30", "--phases", "examples,coverage,fuzzing,stateful",
             "--suppress-health-check", "all"],
            # One worker: with two, hypothesis describes its filters (ast.parse) on two threads at once, and
            # CPython 3.11 then fails at random with "SystemError: AST constructor recursion depth mismatch".
            capture_output=True, text=True, timeout=560, cwd=tmp_path)  # its cache stays out of the repo
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-15000:]
    tested = re.search(r"Tested: (\d+)", output)
    assert tested and int(tested.group(1)) == sum(len(item) for item in operations.values()), output[-3000:]
