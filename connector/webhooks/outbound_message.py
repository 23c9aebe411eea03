"""Salesforce Outbound Messages: the SOAP ``notifications`` envelope in, the Ack out.

Parsing is defused: a DTD (hence any entity, internal or external) is refused
before expansion, so a billion-laughs bomb or an external entity costs nothing;
elements nested deeper than ``MAX_DEPTH`` are refused while parsing. XML itself
admits no control character (but tab and line breaks) and no lone surrogate.
Values are kept only as a record of what arrived; processing re-reads the record.
Ids are kept in their 18-character form, so one notification sent with a 15- or an
18-character id is stored once.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # types, tostring and ParseError only: parsing goes through defusedxml
from dataclasses import dataclass
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from connector.webhooks.errors import MalformedNotificationError
from connector.webhooks.identifiers import id18, is_object_name, is_salesforce_id

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100
#: Deepest element nesting accepted: a notification is Envelope/Body/notifications/Notification/
#: sObject/field (6 levels); anything far deeper is not from Salesforce.
MAX_DEPTH = 32

ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">\n'
    "  <soapenv:Body>\n"
    '    <notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">\n'
    "      <Ack>true</Ack>\n"
    "    </notificationsResponse>\n"
    "  </soapenv:Body>\n"
    "</soapenv:Envelope>\n"
)


def soap_fault(message: str, *, server: bool = False) -> str:
    """A SOAP 1.1 Fault: ``soapenv:Client`` when the request is wrong, ``soapenv:Server`` when
    billsync cannot take it now."""
    code = "soapenv:Server" if server else "soapenv:Client"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">\n'
        "  <soapenv:Body>\n"
        "    <soapenv:Fault>\n"
        f"      <faultcode>{code}</faultcode>\n"
        f"      <faultstring>{escape(message)}</faultstring>\n"
        "    </soapenv:Fault>\n"
        "  </soapenv:Body>\n"
        "</soapenv:Envelope>\n"
    )


@dataclass(frozen=True)
class OutboundNotification:
    notification_id: str  # Notification/Id (04l...): unique per notification, the same on every retry
    object_name: str  # from xsi:type="sf:Opportunity"
    record_id: str  # sf:Id
    last_modified_by_id: str | None  # sf:LastModifiedById when the message carries it
    fragment: str  # the Notification element as received, re-serialised


@dataclass(frozen=True)
class OutboundMessage:
    organization_id: str
    action_id: str | None
    notifications: list[OutboundNotification]


def _malformed(message: str) -> MalformedNotificationError:
    return MalformedNotificationError(f"malformed Outbound Message: {message}")


class _TooDeep(Exception):
    pass


class _BoundedTreeBuilder(ET.TreeBuilder):
    """Builds the tree, refusing (while parsing) elements nested deeper than ``MAX_DEPTH``."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0

    def start(self, tag, attrs):  # type: ignore[no-untyped-def]
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _TooDeep
        return super().start(tag, attrs)

    def end(self, tag):  # type: ignore[no-untyped-def]
        self.depth -= 1
        return super().end(tag)


def _parse(raw: bytes) -> ET.Element:
    parser = DefusedXMLParser(target=_BoundedTreeBuilder(), forbid_dtd=True, forbid_entities=True,
                              forbid_external=True)
    parser.feed(raw)
    return parser.close()


def _text(element: ET.Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def _child(parent: ET.Element, namespace: str, name: str) -> ET.Element | None:
    return parent.find(f"{{{namespace}}}{name}")


def parse_outbound_message(raw: bytes) -> OutboundMessage:
    """Parse and check the envelope; raise ``MalformedNotificationError`` on anything off."""
    if not raw.strip():
        raise _malformed("empty body")
    try:
        root = _parse(raw)
    except _TooDeep:
        raise _malformed(f"elements nested more than {MAX_DEPTH} deep") from None
    except RecursionError:
        raise _malformed("elements nested too deeply") from None
    except DefusedXmlException as exc:
        raise _malformed(f"DTDs, entities and external references are not accepted ({type(exc).__name__})") \
            from exc
    except (ET.ParseError, ValueError, UnicodeError, LookupError) as exc:
        raise _malformed(f"not well-formed XML ({exc})") from exc
    envelope_ns = SOAP11 if root.tag == f"{{{SOAP11}}}Envelope" else SOAP12 if root.tag == f"{{{SOAP12}}}Envelope" \
        else None
    if envelope_ns is None:
        raise _malformed("the root element is not a SOAP Envelope")
    body = _child(root, envelope_ns, "Body")
    if body is None:
        raise _malformed("no SOAP Body")
    notifications = _child(body, OUTBOUND, "notifications")
    if notifications is None:
        raise _malformed(f"no notifications element in namespace {OUTBOUND}")
    org_id = _text(_child(notifications, OUTBOUND, "OrganizationId"))
    if not is_salesforce_id(org_id):
        raise _malformed("OrganizationId is missing or not a Salesforce id")
    action_id = _text(_child(notifications, OUTBOUND, "ActionId")) or None
    elements = notifications.findall(f"{{{OUTBOUND}}}Notification")
    if not elements:
        raise _malformed("no Notification")
    if len(elements) > MAX_NOTIFICATIONS:
        raise _malformed(f"{len(elements)} notifications; Salesforce sends at most {MAX_NOTIFICATIONS}")
    parsed = [_notification(element, index) for index, element in enumerate(elements, 1)]
    return OutboundMessage(id18(org_id), action_id, parsed)


def _notification(element: ET.Element, index: int) -> OutboundNotification:
    notification_id = _text(_child(element, OUTBOUND, "Id"))
    if not is_salesforce_id(notification_id):
        raise _malformed(f"Notification {index}: Id is missing or not a Salesforce id")
    sobject = _child(element, OUTBOUND, "sObject")
    if sobject is None:
        raise _malformed(f"Notification {index}: no sObject")
    declared = sobject.get(f"{{{XSI}}}type") or ""
    object_name = declared.rpartition(":")[2]
    if not is_object_name(object_name):
        raise _malformed(f"Notification {index}: sObject has no valid xsi:type (expected sf:<ObjectName>)")
    fields = {child.tag.rpartition("}")[2]: child for child in sobject}
    record_id = _text(fields.get("Id"))
    if not is_salesforce_id(record_id):
        raise _malformed(f"Notification {index}: sObject Id is missing or not a Salesforce id")
    modified_by = _text(fields.get("LastModifiedById")) or None
    if modified_by is not None and not is_salesforce_id(modified_by):
        raise _malformed(f"Notification {index}: LastModifiedById is not a Salesforce id")
    fragment = ET.tostring(element, encoding="unicode")
    return OutboundNotification(id18(notification_id), object_name, id18(record_id),
                                modified_by and id18(modified_by), fragment)
