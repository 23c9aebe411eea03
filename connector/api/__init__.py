"""HTTP routes other than webhooks: the health and readiness probes (``health``) and the JSON
API under ``/api/v1`` (docs/api.md).

The API's framework: ``framework`` (``ApiBlueprint``, sessions, ``record_audit``, ``respond``,
the app class), ``problems`` (problem+json), ``pagination`` (keyset cursors), ``money`` (the
money model), ``auth`` (API keys and scopes), ``idempotency`` (``Idempotency-Key``). One module
per resource (``audit``, ...), each listed in ``routes.API_MODULES``.
"""
