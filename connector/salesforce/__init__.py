"""The Salesforce client: auth, retries, limits, SOQL building and error classification.

Public names: ``build_client(settings)`` → ``SalesforceClient``; ``build_soql``; the
error tree in ``errors`` (``SalesforceError`` and its subclasses, ``RecordResult``).
"""

from connector.salesforce.client import (
    ApiStatus,
    SalesforceClient,
    SubrequestResult,
    UpsertResult,
    build_client,
)
from connector.salesforce.errors import (
    RecordError,
    RecordResult,
    SalesforceAuthError,
    SalesforceError,
    SalesforceLimitError,
    SalesforceNotConfiguredError,
    SalesforceRecordError,
    SalesforceRequestError,
    SalesforceRetryableError,
    classify,
)
from connector.salesforce.retry import retry_policy
from connector.salesforce.soql import build_soql

__all__ = [
    "ApiStatus", "RecordError", "RecordResult", "SalesforceAuthError", "SalesforceClient", "SalesforceError",
    "SalesforceLimitError", "SalesforceNotConfiguredError", "SalesforceRecordError", "SalesforceRequestError",
    "SalesforceRetryableError", "SubrequestResult", "UpsertResult", "build_client", "build_soql", "classify",
    "retry_policy",
]
