"""The JSON API. Today: the health and readiness probes (connector.api.health)."""
