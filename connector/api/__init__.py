"""The JSON API (health, readiness, and later the finance and admin endpoints)."""
