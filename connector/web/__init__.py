"""The admin and finance web UI. Not built yet: finance uses the CLI (bill-run, metrics, reconcile, sync status)."""
