"""Every module of ``/api/v1`` routes; each exposes ``blueprint`` (an ``ApiBlueprint``).
``connector.wiring.build_app`` registers them in this order. One line per module."""

API_MODULES: tuple[str, ...] = (
    "connector.api.audit",
    "connector.api.subscriptions",
    "connector.api.metrics",
    "connector.api.exchange_rates",
    "connector.api.invoices",
    "connector.api.payments",
    "connector.api.customers",
    "connector.api.churn",
    "connector.api.operations",
    "connector.api.collections",
    "connector.api.usage",
    "connector.api.documents",
    "connector.api.portal_links",
)
