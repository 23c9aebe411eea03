"""Salesforce change notifications: Outbound Messages and signed CDC events (inbox, verification, processing)."""
