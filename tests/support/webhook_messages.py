"""Builders for the notifications Salesforce (and a CDC relay) send: Outbound Message SOAP envelopes
and Change Data Capture events, in the shapes docs/webhooks.md describes. Pure: shared by the unit,
integration and e2e webhook tests."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from xml.sax.saxutils import escape

from mappings.transforms import to_id18

ORG_18 = "00D7F00000107XsUAI"
ORG_15 = "00D7F00000107Xs"
OTHER_ORG = "00D7F00000107XtUAI"
SECRET = "cdc-test-secret"
NOW = 1_795_000_000  # 2026-11-18T..Z, a fixed "now" in unix seconds

# The webhook endpoints of the Flask app.
OM_URL = "/webhooks/salesforce/outbound-message"
CDC_URL = "/webhooks/salesforce/cdc"
SOAP = "text/xml; charset=utf-8"

# An Outbound Message request captured from a real org, whitespace and all.
CAPTURED = b"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>00D7F00000107XsUAI</OrganizationId>
   <ActionId>04k7F0000008V3hQAE</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://ap5.salesforce.com/services/Soap/c/47.0/00D7F00000107Xs</EnterpriseUrl>
   <PartnerUrl>https://ap5.salesforce.com/services/Soap/u/47.0/00D7F00000107Xs</PartnerUrl>
   <Notification>
    <Id>04l7F000008aeAyQAI</Id>
    <sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>0067F000003pmdWQAQ</sf:Id>
     <sf:AccountId>0017F000007ydJmQAI</sf:AccountId>
     <sf:Amount>120000.0</sf:Amount>
     <sf:CloseDate>2017-04-03</sf:CloseDate>
     <sf:LeadSource>Phone Inquiry</sf:LeadSource>
     <sf:Name>Express Logistics SLA</sf:Name>
     <sf:StageName>Perception Analysis</sf:StageName>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&lol9;</soapenv:Body>
</soapenv:Envelope>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>&xxe;</OrganizationId>
</notifications></soapenv:Body></soapenv:Envelope>"""


def notification_id(n: int) -> str:
    return to_id18(f"04l7F{n:010d}")


def record_id(n: int, prefix: str = "006") -> str:
    return to_id18(f"{prefix}7F{n:010d}")


def outbound_envelope(notifications: Iterable[tuple[str, str, str, Mapping[str, Any]]], *,
                      org_id: str = ORG_18, action_id: str = "04k7F0000008V3hQAE", prolog: str = "") -> bytes:
    """``notifications``: (Notification/Id, object, record Id, fields); a field value None is sent nil."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>', prolog,
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
        "<soapenv:Body>",
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">',
        f"<OrganizationId>{org_id}</OrganizationId>",
        f"<ActionId>{action_id}</ActionId>",
        '<SessionId xsi:nil="true"/>',
        "<EnterpriseUrl>https://ap5.salesforce.com/services/Soap/c/47.0/00D7F00000107Xs</EnterpriseUrl>",
        "<PartnerUrl>https://ap5.salesforce.com/services/Soap/u/47.0/00D7F00000107Xs</PartnerUrl>",
    ]
    for note_id, object_name, rec_id, fields in notifications:
        parts.append(f"<Notification><Id>{note_id}</Id>")
        parts.append(f'<sObject xsi:type="sf:{object_name}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">')
        parts.append(f"<sf:Id>{rec_id}</sf:Id>")
        for name, value in fields.items():
            if value is None:
                parts.append(f'<sf:{name} xsi:nil="true"/>')
            else:
                parts.append(f"<sf:{name}>{escape(str(value))}</sf:{name}>")
        parts.append("</sObject></Notification>")
    parts.append("</notifications></soapenv:Body></soapenv:Envelope>")
    return "".join(parts).encode("utf-8")


def opportunity_message(count: int = 1, *, start: int = 1, org_id: str = ORG_18) -> bytes:
    return outbound_envelope(
        [(notification_id(n), "Opportunity", record_id(n),
          {"Amount": "120000.0", "StageName": "Closed Won", "CloseDate": "2026-11-20", "Description": None})
         for n in range(start, start + count)],
        org_id=org_id)


def change_event(change_type: str = "UPDATE", *, entity: str = "Account", record_ids: list[str] | None = None,
                 transaction_key: str = "0005e192-9e62-2554-3880-3c3718bd6308", sequence: int = 1,
                 origin: str = "com/salesforce/api/soap/51.0;client=SfdcInternalAPI/", replay_id: int = 12,
                 envelope: bool = True, **fields: Any) -> dict:
    """A CometD change event (``envelope``) or its bare payload."""
    header = {"commitNumber": 74487681550, "commitUser": "005RM000001hv4SYAQ", "sequenceNumber": sequence,
              "entityName": entity, "changeType": change_type,
              "changedFields": ["Fax", "LastModifiedDate"] if change_type == "UPDATE" else [],
              "changeOrigin": origin, "transactionKey": transaction_key, "commitTimestamp": 1608073758000,
              "recordIds": record_ids if record_ids is not None else ["001RM000004UF9sYAG"]}
    payload = {"LastModifiedDate": "2020-12-15T23:09:18.000Z", **fields, "ChangeEventHeader": header}
    if not envelope:
        return payload
    return {"data": {"schema": "I8b-dYxvxs5wOtCBr4qsew", "payload": payload, "event": {"replayId": replay_id}},
            "channel": f"/data/{entity}ChangeEvent"}


def cdc_body(events: Any) -> bytes:
    return json.dumps(events).encode("utf-8")
