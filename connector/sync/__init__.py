"""Sync between Salesforce and the engine: pull, push, outbox draining, cursors."""
