"""The Salesforce client: auth, retries, limits, SOQL building and error classification."""
