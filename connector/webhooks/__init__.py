"""Salesforce change notifications: Outbound Messages and signed CDC events (inbox, verification, processing).

Receiving (this package today): store durably, deduplicated, then acknowledge.

- ``routes``: the Flask endpoints (thin: bounded body read, one use case, one transaction).
- ``receive``: the use cases ``receive_outbound_message`` and ``receive_cdc_events``.
- ``outbound_message``, ``cdc``: pure parsers of the two wire formats (defused XML, JSON).
- ``verification``: org id, path token, basic auth and HMAC signature checks (pure).
- ``config``: ``WebhookConfig``; ``errors``: refusals classified by what the sender should do.

The inbox table and its insert live in ``connector.storage``. Processing the inbox
(claim, coalesce, refetch, retry, park) comes later.
"""
