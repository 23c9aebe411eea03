"""The shapes of the Salesforce names and ids a notification may carry."""

from __future__ import annotations

import re

from connector.webhooks.inbox import OBJECT_NAME_LENGTH
from mappings.transforms import to_id18

SALESFORCE_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
OBJECT_NAME = re.compile(rf"[A-Za-z][A-Za-z0-9_]{{0,{OBJECT_NAME_LENGTH - 1}}}")
WILDCARD_ID = re.compile(r"[A-Za-z0-9]{3}\*")  # CDC: every record with this key prefix
EMPTY_ID = "000000000000000AAA"  # CDC GAP_OVERFLOW's recordIds


def is_salesforce_id(value: object) -> bool:
    """A 15-character record id, or an 18-character one whose 3-character suffix is the
    checksum of the case of its first 15 (a mistyped or forged suffix is refused)."""
    return (isinstance(value, str) and SALESFORCE_ID.fullmatch(value) is not None
            and (len(value) == 15 or to_id18(value[:15]) == value))


def id18(value: str) -> str:
    """The 18-character form of a valid id: one record has one form, whichever was sent."""
    return to_id18(value) if len(value) == 15 else value


def is_object_name(value: object) -> bool:
    """An sObject API name: ``Account``, ``Invoice__c``, ``ns__Thing__c``."""
    return isinstance(value, str) and OBJECT_NAME.fullmatch(value) is not None
