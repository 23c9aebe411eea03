"""Files as Salesforce keeps them: a ContentVersion posted with base64 VersionData in JSON creates its
ContentDocument and links it to FirstPublishLocationId; its bytes are read back from VersionData's
URL; a version cannot be changed; ContentDocumentLink queries must filter by document or record."""

from __future__ import annotations

import base64
import hashlib

import pytest
from simple_salesforce import format_external_id
from simple_salesforce.exceptions import SalesforceMalformedRequest

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40


def invoice(sf) -> str:
    account = sf.Account.create({"Name": "Acme"})["id"]
    return sf.Invoice__c.create({"Name": "INV-2026-000001", "Account__c": account,
                                 "Billsync_Invoice_Id__c": "inst-inv-1"})["id"]


def upload(sf, parent: str, key: str = "inst-doc-1", data: bytes = PDF):
    return sf.ContentVersion.upsert(format_external_id("Billsync_Document_Id__c", key), {
        "Title": "INV-2026-000001", "PathOnClient": "INV-2026-000001.pdf",
        "VersionData": base64.b64encode(data).decode(), "FirstPublishLocationId": parent})


def test_a_version_creates_its_document_and_links_it_to_the_record(sf):
    parent = invoice(sf)
    assert upload(sf, parent) == 201
    [version] = sf.query("SELECT Id, ContentDocumentId, Checksum, ContentSize, FileType, VersionData, IsLatest "
                         "FROM ContentVersion WHERE Billsync_Document_Id__c = 'inst-doc-1'")["records"]
    assert (version["Checksum"], version["ContentSize"], version["FileType"], version["IsLatest"]) == (
        hashlib.md5(PDF).hexdigest(), len(PDF), "PDF", True)  # noqa: S324 - Salesforce's checksum is MD5
    assert version["VersionData"].endswith(f"/sobjects/ContentVersion/{version['Id']}/VersionData")
    raw = sf.session.get(f"{sf.base_url}sobjects/ContentVersion/{version['Id']}/VersionData", headers=sf.headers)
    assert raw.status_code == 200 and raw.content == PDF
    links = sf.query(f"SELECT LinkedEntityId, ShareType FROM ContentDocumentLink "
                     f"WHERE ContentDocumentId = '{version['ContentDocumentId']}'")["records"]
    assert {(link["LinkedEntityId"], link["ShareType"]) for link in links} >= {(parent, "V")}
    on_record = sf.query(f"SELECT ContentDocumentId FROM ContentDocumentLink WHERE LinkedEntityId = '{parent}'")
    assert [r["ContentDocumentId"] for r in on_record["records"]] == [version["ContentDocumentId"]]


def test_the_same_upsert_again_attaches_nothing_more_and_new_bytes_are_refused(sf):
    parent = invoice(sf)
    upload(sf, parent)
    assert upload(sf, parent) == 200  # the same values: nothing changes
    assert sf.query("SELECT COUNT() FROM ContentDocument")["totalSize"] == 1
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_FIELD_FOR_INSERT_UPDATE"):
        upload(sf, parent, data=b"%PDF other")


def test_link_queries_must_name_a_document_or_a_record(sf):
    with pytest.raises(SalesforceMalformedRequest, match="ContentDocumentLink requires a filter"):
        sf.query("SELECT Id FROM ContentDocumentLink")


def test_a_version_needs_its_data_and_a_real_record(sf):
    with pytest.raises(SalesforceMalformedRequest, match="REQUIRED_FIELD_MISSING"):
        sf.ContentVersion.create({"Title": "x", "PathOnClient": "x.pdf"})
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_CROSS_REFERENCE_KEY"):
        sf.ContentVersion.create({"Title": "x", "PathOnClient": "x.pdf", "VersionData": "JVBERg==",
                                  "FirstPublishLocationId": "a00000000000000AAA"})
