"""A local Salesforce-compatible org over HTTPS on loopback.

Used by the demo (scripts/run), the integration and end-to-end tests, the
benchmarks and fault injection. It imports nothing from the rest of billsync
(a test checks), so it behaves like an outside system.
"""
