"""Salesforce change notifications: Outbound Messages and signed CDC events (inbox, verification, processing).

Receiving (the web process): store durably, deduplicated, then acknowledge.

- ``routes``: the Flask endpoints (thin: bounded body read, one use case, one transaction).
- ``receive``: the use cases ``receive_outbound_message`` and ``receive_cdc_events``.
- ``outbound_message``, ``cdc``: pure parsers of the two wire formats (defused XML, JSON).
- ``verification``: org id, path token, basic auth and HMAC signature checks (pure).
- ``config``: ``WebhookConfig``; ``errors``: refusals classified by what the sender should do.

Processing (the worker): ``processing`` claims inbox rows, coalesces them per record,
re-reads the records from Salesforce (never trusting the payload), applies them as the
pull does, skips billsync's own changes, and retries with backoff before parking a row.

The inbox table and its insert live in ``inbox``; claiming, leases and retries are ``connector.queue``'s.

``connector.sync`` and ``connector.webhooks`` do not import each other, with one exception:
``processing`` imports ``connector.sync.pull``, to apply the records it re-reads exactly as
the pull applies them.
"""
