"""Everything outside the billing engine: the Flask app factory, settings, the
database, the Salesforce client, sync, webhooks, the one queue behind the outbox and
the webhook inbox, the health probes and the JSON API under ``/api/v1`` (``connector.api``),
the web console of finance and admins (``connector.console``), the scheduler, the worker and
the CLI. The local Salesforce sandbox is
a package of its own (``sfsandbox``).

``create_app()`` is the composition root of the web process; the worker, clock
and CLI use the same wiring (``connector.wiring``).
"""

from __future__ import annotations

from flask import Flask

from connector.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    from connector.wiring import build_app

    return build_app(settings)


__all__ = ["create_app"]
