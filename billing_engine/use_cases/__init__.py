"""The engine's use cases, one module per subject; each public function is one use case.

A use case takes the caller's ``Session`` (the caller owns the transaction, so the
outbox events it writes commit with the change), converts rows to the pure domain
values through ``billing_engine.storage`` and back, and lets the pure modules do the
calculating and the validating. Only the bill run (``billing.run_billing``) and the
helpers that say so open their own transactions. Nothing here imports SQLAlchemy or
reads the clock: ``now``/``as_of`` are passed in.
"""
