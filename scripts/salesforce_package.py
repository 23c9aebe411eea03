"""billsync's Salesforce package and its reference page, generated from the one schema.

``sfsandbox/schema.yaml`` declares every object and field billsync reads or writes in an
org (the sandbox serves describe from it); the shipped mappings (``mappings/defaults``) say
which of them billsync reads and which it writes. From those two this script writes:

- ``docs/custom-objects.md``, the admin's reference;
- the SFDX project in ``salesforce/``: ``sfdx-project.json`` and, under
  ``force-app/main/default/``, the custom objects and fields (and billsync's fields on
  standard objects), compact layouts, list views, page layouts, tabs, the Lightning app,
  the quick actions, the permission sets, the report types and the starter reports.

The Lightning components (``lwc/``) are written by hand; everything else under
``force-app/main/default`` is generated, and a test fails when the committed files differ
from what this script writes. After changing the schema or a mapping, run:

    python scripts/salesforce_package.py           # write the files
    python scripts/salesforce_package.py --check   # list what differs, exit 1 if anything does

``metadata_problems`` checks generated (or hand-edited) ``*-meta.xml`` files against
Salesforce's field limits on its own, without the schema, the way a deployment would.
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mappings import MappingSet, load_specs  # noqa: E402
from mappings.soql import line_fields, selected_fields  # noqa: E402
from sfsandbox.schema import FieldSpec, ObjectDef, Schema, load_schema  # noqa: E402

API_VERSION = "62.0"
PROJECT = Path("salesforce")
SOURCE = PROJECT / "force-app" / "main" / "default"
DOC = Path("docs") / "custom-objects.md"
#: The folders under SOURCE this script owns (every file in them is generated).
GENERATED_DIRS = ("objects", "layouts", "tabs", "applications", "permissionsets", "quickActions",
                  "reportTypes", "reports")
NS = "http://soap.sforce.com/2006/04/metadata"
APP = "Billsync"
REPORT_FOLDER = "Billsync_Reports"
SUBSCRIPTION = "Billsync_Subscription__c"
SUBSCRIPTION_ACTIONS = (("Amend", "Amend", "subscriptionAmendAction"),
                        ("Renew", "Renew", "subscriptionRenewAction"),
                        ("Cancel", "Cancel", "subscriptionCancelAction"))
#: Standard objects whose records billsync reads or writes, in the order the docs list them.
STANDARD_OBJECTS = ("Account", "Product2", "PricebookEntry", "Opportunity", "OpportunityLineItem", "QuoteLineItem",
                    "ContentVersion")
#: Fields written for the Lightning components to read (JSON), left off the page layouts.
PANEL_ONLY = frozenset({"Billsync_Preview_Lines__c"})
#: What the connector reads beyond the mappings: open deals are found by stage for previews.
CONNECTOR_READS = {"Opportunity": frozenset({"IsClosed", "StageName"})}
#: What the connector writes beyond the mappings: the Account, Closed Won Opportunity and lines of a
#: self-service order (connector/sync/deals.py), which it creates. Only the integration user gets
#: them: they stay the reps' fields (billsync fills them once, on the records it creates).
CONNECTOR_WRITES = {
    "Account": frozenset({"Name", "CurrencyIsoCode", "BillingCountry", "VAT_Id__c", "Billing_Language__c", "Type",
                          "Billsync_Customer_Id__c"}),
    "Opportunity": frozenset({"Name", "AccountId", "StageName", "CloseDate", "Type", "LeadSource", "CurrencyIsoCode",
                              "Service_Start_Date__c", "Term_Months__c", "Auto_Renew__c", "Description",
                              "Billsync_Subscription_Id__c"}),
    "OpportunityLineItem": frozenset({"OpportunityId", "PricebookEntryId", "Quantity", "TotalPrice"}),
}
CONNECTOR_CREATES = frozenset({"Account", "Opportunity"})
#: What the connector deletes: moving records to this installation's keys deletes stale invoice lines.
CONNECTOR_DELETES = frozenset({"Invoice_Line__c"})
#: Objects whose access Salesforce grants through their parent (no object permission of their own).
CONTROLLED_BY_PARENT = {"OpportunityLineItem": "Opportunity", "QuoteLineItem": "Quote", "PricebookEntry": "Pricebook2"}

#: Salesforce's limits on custom fields (the metadata API refuses a field that breaks one).
MAX_DIGITS = 18
MAX_TEXT = 255
LONG_TEXT = (256, 131_072)
MAX_NAME = 40


# ================================================================ what billsync reads and writes


#: Outbound mappings that write what people set too: the deals and tasks billsync records for what
#: customers do in the portal, and the billing details they edit there. The fields they write stay
#: editable by people (on layouts and in the people's permission sets).
SHARED_WRITES = frozenset({"portal_change", "sales_request", "billing_details"})


@dataclass
class Access:
    """Per object, the fields billsync reads and the fields it writes (a written field is read too);
    ``owned``: the written fields people only read (billsync's figures)."""

    read: dict[str, set[str]] = field(default_factory=dict)
    edit: dict[str, set[str]] = field(default_factory=dict)
    owned: dict[str, set[str]] = field(default_factory=dict)

    def add(self, kind: str, obj: str, name: str) -> None:
        getattr(self, kind).setdefault(obj, set()).add(name)

    def objects(self) -> set[str]:
        return set(self.read) | set(self.edit)

    def reads(self, obj: str) -> set[str]:
        return self.read.get(obj, set()) | self.edit.get(obj, set())

    def direction(self, obj: str, name: str) -> str:
        read = name in self.read.get(obj, set())
        written = name in self.edit.get(obj, set())
        return "read and written" if read and written else "written" if written else "read" if read else "—"


def _resolve(schema: Schema, access: Access, obj: str, path: str, kind: str) -> None:
    """A field path (``Product2.ProductCode``) from ``obj``: each hop's reference field is read."""
    parts = path.split(".")
    current = schema.get(obj)
    for hop in parts[:-1]:
        if current is None:
            return
        ref = current.relationships.get(hop.lower())
        if ref is None:
            return
        access.add("read", current.name, ref.name)
        current = schema.get(ref.reference_to or "")
    if current is not None and current.field(parts[-1]) is not None:
        access.add(kind if len(parts) == 1 else "read", current.name, current.field(parts[-1]).name)


def _filter_paths(text: str | None) -> list[str]:
    return re.findall(r"\b([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)\s*(?:=|!=|<|>|IN\b|LIKE\b)", text or "")


def mapped_access(schema: Schema, specs: MappingSet) -> Access:
    """What billsync's mappings read and write in the org, field by field."""
    access = Access()
    for spec in specs.inbound:
        for path in [*selected_fields(spec), *_filter_paths(spec.filter)]:
            _resolve(schema, access, spec.object, path, "read")
        for source in spec.lines.sources if spec.lines else []:
            for path in line_fields(spec, source):
                _resolve(schema, access, source.object, path, "read")
            if source.match:
                _resolve(schema, access, source.object, source.match, "read")
    for obj, names in CONNECTOR_READS.items():
        for name in names:
            _resolve(schema, access, obj, name, "read")
    for out in specs.outbound:
        target = schema.get(out.object)
        if target is None:
            continue
        names = [f.name for f in out.fields] + ([out.key.name] if out.key.name != "Id" else [])
        for name in names:
            if "." in name:  # Parent__r.Ext_Id__c: the lookup is written, the parent's key read
                relation, _, key = name.partition(".")
                ref = target.relationships.get(relation.lower())
                if ref is not None:
                    access.add("edit", target.name, ref.name)
                    _resolve(schema, access, ref.reference_to or "", key, "read")
            elif target.field(name) is not None:
                access.add("edit", target.name, target.field(name).name)
        access.add("read", target.name, "Id")
    for out in specs.outbound:
        if schema.get(out.object) is None:
            continue
        key = [out.key.name] if out.key.name != "Id" else []  # billsync's key: never people's to set
        for name in key if out.name in SHARED_WRITES else [f.name for f in out.fields] + key:
            relation = schema.get(out.object).relationships.get(name.partition(".")[0].lower()) if "." in name \
                else None
            written = relation.name if relation is not None else (
                schema.get(out.object).field(name).name if schema.get(out.object).field(name) else None)
            if written is not None:
                access.add("owned", out.object, written)
    return access


# ================================================================ XML


class X:
    """An XML element: ``X("label", "Invoice")``, ``X("valueSet", X(...), X(...))``."""

    def __init__(self, tag: str, *children: Any, **attrs: str):
        self.tag, self.attrs = tag, attrs
        self.children = [c for c in children if c is not None]

    def render(self, depth: int = 0) -> str:
        pad = "    " * depth
        attrs = "".join(f' {k}="{escape(v)}"' for k, v in self.attrs.items())
        if not self.children:
            return f"{pad}<{self.tag}{attrs}/>"
        if all(not isinstance(c, X) for c in self.children):
            text = "".join(_text(c) for c in self.children)
            return f"{pad}<{self.tag}{attrs}>{escape(text)}</{self.tag}>"
        inner = "\n".join(c.render(depth + 1) for c in self.children)
        return f"{pad}<{self.tag}{attrs}>\n{inner}\n{pad}</{self.tag}>"


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def document(root: str, *children: Any) -> str:
    body = X(root, *children, xmlns=NS).render()
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def _plain(markdown: str, limit: int = 1000) -> str:
    """Docs text without markdown links and backticks, for a metadata description."""
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", markdown).replace("`", "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ================================================================ objects and fields


def custom_fields(obj: ObjectDef) -> list[FieldSpec]:
    return [f for f in obj.fields.values() if f.custom]


def metadata_type(spec: FieldSpec) -> str:
    if spec.type == "reference":
        return "MasterDetail" if spec.master_detail else "Lookup"
    if spec.type == "textarea":
        return "LongTextArea" if spec.length > MAX_TEXT else "TextArea"
    return {"string": "Text", "double": "Number", "int": "Number", "currency": "Currency", "percent": "Percent",
            "boolean": "Checkbox", "date": "Date", "datetime": "DateTime", "picklist": "Picklist",
            "email": "Email", "phone": "Phone", "url": "Url"}[spec.type]


def field_xml(spec: FieldSpec) -> str:
    kind = metadata_type(spec)
    parts: list[Any] = [X("fullName", spec.name)]
    if spec.description:
        parts.append(X("description", _plain(spec.description)))
    if kind == "Checkbox":
        parts.append(X("defaultValue", bool(spec.default)))
    if kind in ("Text", "Number", "Email"):
        parts.append(X("externalId", spec.external_id))
    parts.append(X("label", spec.label))
    if kind in ("Text", "LongTextArea"):
        parts.append(X("length", spec.length))
    if kind in ("Number", "Currency", "Percent"):
        parts.append(X("precision", spec.precision if spec.type != "int" else 9))
        parts.append(X("scale", spec.scale if spec.type != "int" else 0))
    if kind in ("Lookup", "MasterDetail"):
        child = (spec.child_relationship or "").removesuffix("__r")
        parts.append(X("referenceTo", spec.reference_to))
        parts.append(X("relationshipLabel", _label_of(child)))
        parts.append(X("relationshipName", child))
        if kind == "MasterDetail":
            parts.append(X("relationshipOrder", 0))
            parts.append(X("reparentableMasterDetail", False))
        else:
            parts.append(X("deleteConstraint", "SetNull"))
    if kind not in ("MasterDetail", "Checkbox"):
        parts.append(X("required", spec.required))
    if kind == "Text" and spec.unique:
        parts.append(X("caseSensitive", spec.case_sensitive))
    if kind == "Picklist":
        parts.append(X("valueSet", X("restricted", spec.restricted), X("valueSetDefinition", X("sorted", False), *[
            X("value", X("fullName", v), X("default", v == spec.default), X("label", v)) for v in spec.values])))
    parts.append(X("type", kind))
    if kind in ("Text", "Number", "Email"):
        parts.append(X("unique", spec.unique))
    if kind == "LongTextArea":
        parts.append(X("visibleLines", 5))
    if kind == "MasterDetail":
        parts.append(X("writeRequiresMasterRead", False))
    return document("CustomField", *parts)


def _label_of(name: str) -> str:
    return name.replace("Billsync_", "").replace("_", " ")


def object_xml(obj: ObjectDef) -> str:
    detail = any(f.master_detail for f in obj.fields.values())
    name = obj.fields["Name"]
    return document(
        "CustomObject",
        X("compactLayoutAssignment", f"{_base(obj.name)}_Compact"),
        X("deploymentStatus", "Deployed"),
        X("description", _plain(obj.description)) if obj.description else None,
        X("enableActivities", False), X("enableBulkApi", True), X("enableFeeds", False),
        X("enableHistory", False), X("enableReports", True), X("enableSearch", True),
        X("enableSharing", True), X("enableStreamingApi", True),
        X("label", obj.label),
        X("nameField", X("label", name.label), X("type", "Text")),
        X("pluralLabel", obj.plural_label),
        X("searchLayouts"),
        X("sharingModel", "ControlledByParent" if detail else "ReadWrite"),
        X("visibility", "Public"),
    )


def _base(name: str) -> str:
    return name.removesuffix("__c")


def _summary_fields(obj: ObjectDef) -> list[str]:
    """The few fields that tell a record apart: its compact layout, list views and related lists."""
    wanted = {
        "Invoice__c": ["Name", "Account__c", "Status__c", "Payment_Status__c", "Issue_Date__c", "Due_Date__c",
                       "Total__c", "Balance__c"],
        "Invoice_Line__c": ["Name", "Description__c", "Kind__c", "Quantity__c", "Unit_Price__c", "Amount__c"],
        "Payment__c": ["Name", "Account__c", "Amount__c", "Unapplied_Amount__c", "Payment_Date__c", "Status__c"],
        SUBSCRIPTION: ["Name", "Account__c", "Status__c", "Ends_On__c", "MRR__c", "ARR__c", "Next_Invoice_Date__c"],
        "Billsync_Subscription_Item__c": ["Name", "Product__c", "Quantity__c", "Pricing_Model__c",
                                          "Contract_Price__c"],
    }.get(obj.name)
    if wanted is None:  # an object this script has no opinion on: its first fields
        wanted = ["Name", *[f.name for f in custom_fields(obj)
                            if f.type not in ("textarea", "reference") and not f.external_id][:5]]
    return [f for f in wanted if obj.field(f) is not None]


def compact_layout_xml(obj: ObjectDef) -> str:
    return document("CompactLayout", X("fullName", f"{_base(obj.name)}_Compact"),
                    *[X("fields", f) for f in _summary_fields(obj)[:6]],
                    X("label", f"{obj.label} summary"))


# ================================================================ list views


@dataclass(frozen=True)
class ListView:
    obj: str
    name: str
    label: str
    columns: tuple[str, ...]
    filters: tuple[tuple[str, str, str], ...] = ()

    def xml(self) -> str:
        return document("ListView", X("fullName", self.name), *[X("columns", c) for c in self.columns],
                        X("filterScope", "Everything"),
                        *[X("filters", X("field", f), X("operation", op), X("value", v)) for f, op, v in self.filters],
                        X("label", self.label))


def list_views(schema: Schema) -> list[ListView]:
    views: list[ListView] = []
    for obj in schema.objects.values():
        if obj.custom and not any(f.master_detail for f in obj.fields.values()):
            columns = tuple("NAME" if c == "Name" else c for c in _summary_fields(obj))
            views.append(ListView(obj.name, "All", f"All {obj.plural_label}", columns))
    if schema.get("Invoice__c"):
        columns = ("NAME", "Account__c", "Due_Date__c", "Total__c", "Balance__c", "Payment_Status__c")
        views.append(ListView("Invoice__c", "Open_Invoices", "Open invoices", columns, (("Status__c", "equals", "open"),)))
        views.append(ListView("Invoice__c", "Overdue_Invoices", "Overdue invoices", columns,
                              (("Payment_Status__c", "equals", "overdue"),)))
    if schema.get(SUBSCRIPTION):
        views.append(ListView(SUBSCRIPTION, "Cancelling", "Cancelling subscriptions",
                              ("NAME", "Account__c", "Ends_On__c", "MRR__c"), (("Status__c", "equals", "cancelling"),)))
    for obj, name_column in (("Account", "ACCOUNT.NAME"), ("Opportunity", "OPPORTUNITY.NAME")):
        found = schema.get(obj)
        if found is not None and found.field("Billing_Review_Flag__c") is not None:
            views.append(ListView(obj, "Billing_Review", "Billing review", (name_column, "Billing_Review_Reason__c"),
                                  (("Billing_Review_Flag__c", "equals", "1"),)))
    return views


# ================================================================ page layouts, tabs, app, quick actions


def _section(label: str, names: list[str], behavior: dict[str, str] | None = None) -> X:
    behavior = behavior or {}
    half = (len(names) + 1) // 2
    columns = [names[:half], names[half:]]
    return X("layoutSections", X("customLabel", True), X("detailHeading", True), X("editHeading", True),
             X("label", label),
             *[X("layoutColumns", *[X("layoutItems", X("behavior", behavior.get(n, "Edit")), X("field", n))
                                    for n in column]) for column in columns],
             X("style", "TwoColumnsTopToBottom"))


def _related_lists(schema: Schema, obj: ObjectDef) -> list[X]:
    out = []
    for other in schema.objects.values():
        if not other.custom:
            continue
        for f in custom_fields(other):
            if f.type == "reference" and f.reference_to == obj.name:
                columns = [c if c != "Name" else "NAME" for c in _summary_fields(other) if c != f.name][:6]
                out.append(X("relatedLists", *[X("fields", c) for c in columns],
                             X("relatedList", f"{other.name}.{f.name}")))
    return out


def layout_xml(schema: Schema, obj: ObjectDef, sections: list[tuple[str, list[str]]],
               actions: Iterable[str] = ()) -> str:
    behavior = {f.name: "Readonly" for f in obj.fields.values()}  # billsync writes them: people read
    behavior.update({f.name: "Required" for f in obj.fields.values() if f.required})
    if not obj.custom:
        behavior = {f.name: "Required" if f.required else "Edit" for f in obj.fields.values()}
        behavior.update({n: "Readonly" for n in _written_by_billsync(obj)})
    platform = []
    if actions:
        platform = [X("platformActionList", X("actionListContext", "Record"), *[
            X("platformActionListItems", X("actionName", a), X("actionType", "QuickAction"), X("sortOrder", i))
            for i, a in enumerate(actions)])]
    return document(
        "Layout",
        *[_section(label, names, behavior) for label, names in sections if names],
        *platform,
        *_related_lists(schema, obj),
        X("showEmailCheckbox", False), X("showHighlightsPanel", False), X("showInteractionLogPanel", False),
        X("showRunAssignmentRulesCheckbox", False), X("showSubmitAndAttachButton", False),
    )


_WRITTEN: dict[str, set[str]] = {}


def _written_by_billsync(obj: ObjectDef) -> set[str]:
    return _WRITTEN.get(obj.name, set())


def layouts(schema: Schema, access: Access) -> dict[str, str]:
    _WRITTEN.clear()
    _WRITTEN.update({k: set(v) for k, v in access.owned.items()})
    out: dict[str, str] = {}
    for obj in schema.objects.values():
        if not obj.custom:
            continue
        names = [f.name for f in custom_fields(obj) if not f.external_id]
        key = [f.name for f in custom_fields(obj) if f.external_id]
        actions = [f"{obj.name}.{a}" for a, _, _ in SUBSCRIPTION_ACTIONS] if obj.name == SUBSCRIPTION else []
        out[f"{obj.name}-{obj.label} Layout"] = layout_xml(
            schema, obj, [("Information", ["Name", *names]), ("billsync", [*key, "CreatedById", "LastModifiedById"])],
            actions)
    account = schema.get("Account")
    if account is not None:
        billing = [f.name for f in custom_fields(account) if f.name in access.owned.get("Account", set())]
        settings = [f.name for f in custom_fields(account) if f.name not in billing]
        out["Account-Billsync Account Layout"] = layout_xml(schema, account, [
            ("Account Information", ["Name", "Type", "Industry", "Phone", "Website"]),
            ("Address", ["BillingStreet", "BillingCity", "BillingState", "BillingPostalCode", "BillingCountry"]),
            ("Billing settings", settings), ("Billing summary (billsync)", billing)])
    deal = schema.get("Opportunity")
    if deal is not None:
        written = access.owned.get("Opportunity", set())
        preview = [f.name for f in custom_fields(deal) if f.name.startswith("Billsync_Preview")
                   or f.name == "Billsync_Previewed_At__c"]
        billing = [f.name for f in custom_fields(deal) if f.name in written and f.name not in preview]
        preview = [n for n in preview if n not in PANEL_ONLY]
        terms = [f.name for f in custom_fields(deal) if f.name not in written]
        out["Opportunity-Billsync Opportunity Layout"] = layout_xml(schema, deal, [
            ("Opportunity Information", ["Name", "AccountId", "Type", "StageName", "CloseDate", "Amount",
                                         "Pricebook2Id"]),
            ("Billing terms", terms), ("Billing preview (billsync)", preview), ("Billing (billsync)", billing)])
    return out


def tab_xml() -> str:
    return document("CustomTab", X("customObject", True), X("motif", "Custom83: Money"))


def tabbed_objects(schema: Schema) -> list[str]:
    return [o.name for o in schema.objects.values()
            if o.custom and not any(f.master_detail for f in o.fields.values())]


def app_xml(schema: Schema) -> str:
    tabs = ["standard-home", "standard-Account", "standard-Opportunity", *tabbed_objects(schema), "standard-report"]
    return document(
        "CustomApplication",
        X("brand", X("headerColor", "#0B5CAB"), X("shouldOverrideOrgTheme", False)),
        X("description", "billsync's billing data next to the accounts and deals it comes from."),
        X("formFactors", "Small"), X("formFactors", "Large"),
        X("isNavAutoTempTabsDisabled", False), X("isNavPersonalizationDisabled", False),
        X("label", "Billing"), X("navType", "Standard"),
        *[X("tabs", t) for t in tabs], X("uiType", "Lightning"))


def quick_action_xml(label: str, component: str) -> str:
    return document("QuickAction", X("actionSubtype", "ScreenAction"), X("label", label),
                    X("lightningWebComponent", component), X("optionsCreateFeedItem", False),
                    X("type", "LightningWebComponent"))


# ================================================================ permission sets


def _object_permission(obj: str, *, create: bool = False, read: bool = True, edit: bool = False,
                       delete: bool = False, view_all: bool = False) -> X:
    return X("objectPermissions", X("allowCreate", create), X("allowDelete", delete), X("allowEdit", edit),
             X("allowRead", read), X("modifyAllRecords", False), X("object", obj), X("viewAllRecords", view_all))


def permissionable_fields(schema: Schema, obj: str, names: Iterable[str]) -> list[str]:
    """Custom fields that take a field permission: not required ones (a master-detail is always readable)."""
    found = schema.get(obj)
    if found is None:
        return []
    out = []
    for name in names:
        spec = found.field(name)
        if spec is not None and spec.custom and not spec.required and not spec.master_detail:
            out.append(spec.name)
    return sorted(out)


def _permission_objects(objects: Iterable[str]) -> list[str]:
    return sorted({CONTROLLED_BY_PARENT.get(o, o) for o in objects} - {"User"})


def integration_permissions(schema: Schema, access: Access) -> dict[str, Any]:
    """The integration user's access, exactly what the mappings need: objects and custom fields."""
    objects: dict[str, dict[str, bool]] = {}
    for obj in _permission_objects(access.objects()):
        custom = obj.endswith("__c")
        written_here = obj in access.edit or any(CONTROLLED_BY_PARENT.get(o) == obj for o in access.edit)
        objects[obj] = {"create": custom or obj in CONNECTOR_CREATES, "read": True, "edit": written_here, "delete": obj in CONNECTOR_DELETES,
                        "view_all": True}
    fields: dict[str, tuple[bool, bool]] = {}
    for obj in sorted(access.objects() | set(CONNECTOR_WRITES)):
        written = access.edit.get(obj, set()) | CONNECTOR_WRITES.get(obj, frozenset())
        for name in permissionable_fields(schema, obj, access.reads(obj) | written):
            fields[f"{obj}.{name}"] = (True, name in written)
    for obj in CONNECTOR_CREATES:
        objects.setdefault(obj, {"create": True, "read": True, "edit": True, "delete": False, "view_all": True})
        objects[obj]["edit"] = True
    return {"objects": objects, "fields": fields}


def permission_set_xml(label: str, description: str, objects: dict[str, dict[str, bool]],
                       fields: dict[str, tuple[bool, bool]], *, tabs: Iterable[str] = (), app: bool = False,
                       api: bool = False) -> str:
    return document(
        "PermissionSet",
        X("applicationVisibilities", X("application", APP), X("visible", True)) if app else None,
        X("description", description),
        *[X("fieldPermissions", X("editable", edit), X("field", name), X("readable", read))
          for name, (read, edit) in sorted(fields.items())],
        X("hasActivationRequired", False),
        X("label", label),
        *[_object_permission(o, **flags) for o, flags in sorted(objects.items())],
        *[X("tabSettings", X("tab", t), X("visibility", "Visible")) for t in tabs],
        X("userPermissions", X("enabled", True), X("name", "ApiEnabled")) if api else None,
    )


def permission_sets(schema: Schema, access: Access) -> dict[str, str]:
    integration = integration_permissions(schema, access)
    billing_objects = [o.name for o in schema.objects.values() if o.custom]
    written = {f"{o}.{n}" for o, names in access.owned.items() for n in permissionable_fields(schema, o, names)}
    read_by_billsync = {f"{o}.{n}" for o, names in access.read.items() for n in permissionable_fields(schema, o, names)}
    every_custom = {f"{o.name}.{n}" for o in schema.objects.values()
                    for n in permissionable_fields(schema, o.name, [f.name for f in custom_fields(o)])}
    tabs = tabbed_objects(schema)
    # Reps read billing data and set the deal's terms (what billsync reads); billsync's figures stay read-only.
    sales_fields = {name: (True, name in read_by_billsync and name not in written
                           and name.split(".")[0] in ("Opportunity", "OpportunityLineItem", "QuoteLineItem"))
                    for name in every_custom}
    sales_objects = {o: {"read": True} for o in billing_objects}
    sales_objects.update({"Opportunity": {"create": True, "read": True, "edit": True}, "Account": {"read": True},
                          "Product2": {"read": True}, "Pricebook2": {"read": True}})
    # Finance sees every billing record and sets what billsync reads on accounts and products.
    finance_fields = {name: (True, name in read_by_billsync and name not in written) for name in every_custom}
    finance_objects = {o: {"read": True, "view_all": True} for o in billing_objects}
    finance_objects.update({"Account": {"read": True, "edit": True}, "Opportunity": {"read": True, "view_all": True},
                            "Product2": {"read": True, "edit": True}, "Pricebook2": {"read": True, "edit": True}})
    return {
        "Billsync_Integration": permission_set_xml(
            "billsync integration", "The integration user billsync logs in as: exactly the objects and fields "
            "billsync's mappings read and write.", integration["objects"], integration["fields"], api=True),
        "Billsync_Sales": permission_set_xml(
            "billsync sales", "Reps: read billing data, set a deal's billing terms, amend, renew or cancel a "
            "subscription (its actions create the deal).", sales_objects, sales_fields, tabs=tabs, app=True),
        "Billsync_Finance": permission_set_xml(
            "billsync finance", "Finance: every billing record, the billing settings of accounts and products, "
            "the reports.", finance_objects, finance_fields, tabs=tabs, app=True),
    }


# ================================================================ report types and reports


def report_type_xml(schema: Schema, obj: ObjectDef, label: str, description: str, child: str | None) -> str:
    def section(o: ObjectDef, table: str, title: str) -> X:
        names = ["Name", *[f.name for f in custom_fields(o) if not f.master_detail]]
        return X("sections", *[X("columns", X("checkedByDefault", n in _summary_fields(o)), X("field", n),
                                 X("table", table)) for n in names], X("masterLabel", title))

    join = None
    sections = [section(obj, obj.name, obj.plural_label)]
    if child is not None:
        relation, child_obj = _child(schema, obj, child)
        join = X("join", X("outerJoin", True), X("relationship", relation))
        sections.append(section(child_obj, f"{obj.name}.{relation}", child_obj.plural_label))
    return document("ReportType", X("baseObject", obj.name), X("category", "other"), X("deployed", True),
                    X("description", description), join, X("label", label), *sections)


def _child(schema: Schema, parent: ObjectDef, child: str) -> tuple[str, ObjectDef]:
    child_obj = schema.get(child)
    assert child_obj is not None
    ref = next(f for f in custom_fields(child_obj) if f.reference_to == parent.name)
    return ref.child_relationship or "", child_obj


REPORT_TYPES = (
    ("Billsync_Invoices", "Invoice__c", "Invoice_Line__c", "billsync invoices with their lines",
     "Invoices billsync issued, with their lines when they have some."),
    ("Billsync_Subscriptions", SUBSCRIPTION, "Billsync_Subscription_Item__c",
     "billsync subscriptions with their items", "Subscriptions as billsync bills them, with their items."),
    ("Billsync_Payments", "Payment__c", None, "billsync payments", "Payments billsync recorded."),
)


def _column(obj: str, name: str, aggregate: str | None = None) -> X:
    return X("columns", X("aggregateTypes", aggregate) if aggregate else None, X("field", f"{obj}${name}"))


def reports(schema: Schema) -> dict[str, str]:
    out: dict[str, str] = {}
    inv, sub = "Invoice__c", SUBSCRIPTION
    if schema.get(sub) is not None:
        out["MRR_by_Account"] = document(
            "Report", _column(sub, "Name"), _column(sub, "Status__c"), _column(sub, "MRR__c", "Sum"),
            _column(sub, "ARR__c", "Sum"),
            X("description", "Monthly and yearly recurring revenue per account, from the subscriptions that run."),
            X("filter", X("criteriaItems", X("column", f"{sub}$Status__c"), X("columnToColumn", False),
                          X("isUnlocked", True), X("operator", "notEqual"), X("value", "cancelled"))),
            X("format", "Summary"),
            X("groupingsDown", X("dateGranularity", "Day"), X("field", f"{sub}$Account__c"), X("sortOrder", "Asc")),
            X("name", "MRR by account"), X("reportType", "Billsync_Subscriptions__c"), X("scope", "organization"),
            X("showDetails", True), X("showGrandTotal", True), X("showSubTotals", True),
            X("timeFrameFilter", X("dateColumn", f"{sub}$Start_Date__c"), X("interval", "INTERVAL_CUSTOM")))
    if schema.get(inv) is not None:
        columns = [_column(inv, "Name"), _column(inv, "Account__c"), _column(inv, "Issue_Date__c"),
                   _column(inv, "Due_Date__c"), _column(inv, "Payment_Status__c"), _column(inv, "Total__c", "Sum"),
                   _column(inv, "Balance__c", "Sum")]
        out["Open_Invoices_by_Age"] = document(
            "Report", *columns,
            X("description", "Open invoices grouped by the month they fell due: the oldest debts first."),
            X("filter", X("criteriaItems", X("column", f"{inv}$Status__c"), X("columnToColumn", False),
                          X("isUnlocked", True), X("operator", "equals"), X("value", "open"))),
            X("format", "Summary"),
            X("groupingsDown", X("dateGranularity", "Month"), X("field", f"{inv}$Due_Date__c"), X("sortOrder", "Asc")),
            X("name", "Open invoices by age"), X("reportType", "Billsync_Invoices__c"), X("scope", "organization"),
            X("showDetails", True), X("showGrandTotal", True), X("showSubTotals", True),
            X("timeFrameFilter", X("dateColumn", f"{inv}$Due_Date__c"), X("interval", "INTERVAL_CUSTOM")))
        out["Invoices_This_Month"] = document(
            "Report", *columns, X("description", "Every invoice issued this calendar month."),
            X("format", "Tabular"), X("name", "Invoices this month"), X("reportType", "Billsync_Invoices__c"),
            X("scope", "organization"), X("showDetails", True), X("showGrandTotal", True), X("showSubTotals", True),
            X("sortColumn", f"{inv}$Issue_Date__c"), X("sortOrder", "Asc"),
            X("timeFrameFilter", X("dateColumn", f"{inv}$Issue_Date__c"), X("interval", "INTERVAL_CURRENT")))
    return out


# ================================================================ the project


def sfdx_project() -> str:
    return ('{\n  "packageDirectories": [{ "path": "force-app", "default": true }],\n'
            '  "name": "billsync",\n  "namespace": "",\n  "sfdcLoginUrl": "https://login.salesforce.com",\n'
            f'  "sourceApiVersion": "{API_VERSION}"\n}}\n')


def generate(schema: Schema | None = None, specs: MappingSet | None = None) -> dict[Path, str]:
    """Every generated file, by path from the repository root."""
    schema = schema or load_schema()
    specs = specs or load_specs(None)
    access = mapped_access(schema, specs)
    files: dict[Path, str] = {PROJECT / "sfdx-project.json": sfdx_project(), DOC: custom_objects_doc(schema, access)}
    objects = SOURCE / "objects"
    for obj in schema.objects.values():
        fields = custom_fields(obj)
        if obj.custom:
            files[objects / obj.name / f"{obj.name}.object-meta.xml"] = object_xml(obj)
            files[objects / obj.name / "compactLayouts" / f"{_base(obj.name)}_Compact.compactLayout-meta.xml"] = \
                compact_layout_xml(obj)
        elif not fields:
            continue
        for spec in fields:
            files[objects / obj.name / "fields" / f"{spec.name}.field-meta.xml"] = field_xml(spec)
    for view in list_views(schema):
        files[objects / view.obj / "listViews" / f"{view.name}.listView-meta.xml"] = view.xml()
    for rule in schema_rules(schema):
        files[objects / rule[0] / "validationRules" / f"{rule[1]}.validationRule-meta.xml"] = rule[2]
    for name, text in layouts(schema, access).items():
        files[SOURCE / "layouts" / f"{name}.layout-meta.xml"] = text
    for name in tabbed_objects(schema):
        files[SOURCE / "tabs" / f"{name}.tab-meta.xml"] = tab_xml()
    files[SOURCE / "applications" / f"{APP}.app-meta.xml"] = app_xml(schema)
    if schema.get(SUBSCRIPTION) is not None:
        for action, label, component in SUBSCRIPTION_ACTIONS:
            files[SOURCE / "quickActions" / f"{SUBSCRIPTION}.{action}.quickAction-meta.xml"] = \
                quick_action_xml(label, component)
    for name, text in permission_sets(schema, access).items():
        files[SOURCE / "permissionsets" / f"{name}.permissionset-meta.xml"] = text
    for name, base, child, label, description in REPORT_TYPES:
        obj = schema.get(base)
        if obj is not None and (child is None or schema.get(child) is not None):
            files[SOURCE / "reportTypes" / f"{name}.reportType-meta.xml"] = \
                report_type_xml(schema, obj, label, description, child)
    files[SOURCE / "reports" / f"{REPORT_FOLDER}.reportFolder-meta.xml"] = document(
        "ReportFolder", X("accessType", "Public"), X("name", "billsync"), X("publicFolderAccess", "ReadOnly"))
    for name, text in reports(schema).items():
        files[SOURCE / "reports" / REPORT_FOLDER / f"{name}.report-meta.xml"] = text
    return files


def schema_rules(schema: Schema) -> list[tuple[str, str, str]]:
    out = []
    for obj in schema.objects.values():
        for rule in obj.rules:
            formula = rule.formula.text
            out.append((obj.name, rule.name, document(
                "ValidationRule", X("fullName", rule.name), X("active", True), X("errorConditionFormula", formula),
                X("errorDisplayField", rule.error_field) if rule.error_field else None,
                X("errorMessage", rule.message))))
    return out


# ================================================================ docs/custom-objects.md


def display_type(spec: FieldSpec) -> str:
    """The type as Setup shows it: Currency(16,2) is 16 digits before the point and 2 after."""
    kind = metadata_type(spec)
    if kind in ("Number", "Currency", "Percent"):
        text = f"{kind}({spec.precision - spec.scale},{spec.scale})"
    elif kind == "Text":
        text = f"Text({spec.length})"
    elif kind == "LongTextArea":
        text = f"Long Text({spec.length})"
    elif kind == "TextArea":
        text = "Text Area"
    elif kind == "Checkbox":
        text = f"Checkbox (default {'checked' if spec.default else 'unchecked'})"
    elif kind == "Picklist":
        text = "Picklist" if spec.currency else "Picklist: " + ", ".join(f"`{v}`" for v in spec.values)
    elif kind == "Lookup":
        text = f"Lookup({spec.reference_to})"
    elif kind == "MasterDetail":
        text = f"Master-Detail({spec.reference_to})"
    elif kind == "DateTime":
        text = "Date/Time"
    else:
        text = kind
    if spec.external_id and spec.unique:
        text += ", ext id"
    return text


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def custom_objects_doc(schema: Schema, access: Access) -> str:
    out = [
        "<!-- Generated from sfsandbox/schema.yaml and mappings/defaults by scripts/salesforce_package.py:",
        "     edit those and run `python scripts/salesforce_package.py`, never this file. -->",
        "# Salesforce custom objects and fields billsync uses",
        "",
        "> **Generated** from `sfsandbox/schema.yaml` (the objects and fields) and the shipped mappings",
        "> (what billsync reads and writes) by `scripts/salesforce_package.py`, like the SFDX project in",
        "> `salesforce/` that creates them in an org. Edit the schema or a mapping, then run",
        "> `python scripts/salesforce_package.py`; a test fails while this page or the project differs.",
        "",
        "This is the contract between billsync and a Salesforce org. The local sandbox declares exactly",
        "these, the shipped mappings (`mappings/defaults/*.yaml`) read and write exactly these, and the",
        "package in `salesforce/` creates them (see [salesforce-setup.md](salesforce-setup.md)). Types are",
        "shown as Setup shows them: `Currency(16,2)` is 16 digits before the point and 2 after (in the",
        "metadata, precision 18 and scale 2; Salesforce allows 18 digits in all). `ext id` means",
        "*External ID + Unique* (case-sensitive).",
        "",
        "The org is a **multi-currency org**: `CurrencyIsoCode` exists on Account, Opportunity, Quote,",
        "QuoteLineItem, OpportunityLineItem, PricebookEntry and on the custom objects below. An org",
        "without multi-currency drops those fields from the mappings and sets `default_currency` instead.",
        "",
        "## Fields added to standard objects",
        "",
        "`direction` says what billsync does with the field: it **reads** what people set and **writes**",
        "its own figures (people read those; billsync overwrites them at its next push).",
    ]
    for name in STANDARD_OBJECTS:
        obj = schema.get(name)
        if obj is None:
            continue
        rows = [f for f in obj.fields.values() if f.custom or f.description]
        if not rows:
            continue
        heading = f"### {name}" + (f" ({obj.description})" if obj.description else "")
        out += ["", heading, "| field | type | direction | meaning |", "|---|---|---|---|"]
        for spec in rows:
            kind = display_type(spec) if spec.custom else f"{display_type(spec)} (standard)"
            out.append(_row([f"`{spec.name}`", kind, access.direction(name, spec.name), spec.description]))
    out += [
        "",
        "## External ids",
        "",
        "Every billsync installation (one database) has a random id of ten lowercase letters and",
        "digits, generated once and kept in its `installation` table (`billsync sync status` shows",
        "it), and keys every record it writes to a custom object with it, so the keys of two",
        "installations never meet in one org:",
        "",
        "| field | value | example |",
        "|---|---|---|",
        "| `Invoice__c.Billsync_Invoice_Id__c` | `<installation>-inv-<invoice id>` | `k3f9x2ab7q-inv-42` |",
        "| `Invoice_Line__c.Billsync_Line_Id__c` | `<installation>-line-<line id>` | `k3f9x2ab7q-line-310` |",
        "| `Payment__c.Billsync_Payment_Id__c` | `<installation>-pay-<payment id>` | `k3f9x2ab7q-pay-7` |",
        "| `ContentVersion.Billsync_Document_Id__c` | `<installation>-doc-<document id>` (an invoice's or credit"
        " note's PDF) | `k3f9x2ab7q-doc-42` |",
        "| `Billsync_Subscription__c.Billsync_Subscription_Key__c` | `<installation>-sub-<subscription id>` |"
        " `k3f9x2ab7q-sub-0065g00000AbCdEAAA` |",
        "| `Billsync_Subscription_Item__c.Billsync_Item_Key__c` | `<installation>-item-<item id>` |"
        " `k3f9x2ab7q-item-00k5g00000XyZ12AAB` |",
        "| `Account.Billsync_Customer_Id__c` | the customer id, derived from the Account's Salesforce id | `cus-001...` |",
        "| `Opportunity.Billsync_Subscription_Id__c` | the subscription id, derived from the deal's Salesforce id |"
        " `sub-006...` |",
        "",
        "Keys are at most 64 characters (the size of the fields). Keys written before installations had",
        "ids are bare engine ids (`42`); the first push after the upgrade re-keys them in place. An",
        "installation pushes only into the org it is bound to and refuses an org holding another",
        "installation's keys unless the admin adopts it",
        "([salesforce-setup.md](salesforce-setup.md#one-installation-per-org-moving-databases-adopt)).",
        "",
        "## Custom objects (written by billsync)",
    ]
    for obj in schema.objects.values():
        if not obj.custom:
            continue
        out += ["", f"### `{obj.name}` ({obj.label})"]
        if obj.description:
            out += [obj.description]
        out += ["", "| field | type | meaning |", "|---|---|---|"]
        name = obj.fields["Name"]
        out.append(_row(["`Name`", f"Text({name.length})", name.description]))
        for spec in custom_fields(obj):
            out.append(_row([f"`{spec.name}`", display_type(spec), spec.description]))
        if any(f.currency for f in obj.fields.values()):
            out.append(_row(["`CurrencyIsoCode`", "Picklist (standard)", "the record's currency"]))
        for rule in obj.rules:
            out += ["", f"Validation rule `{rule.name}`: {rule.message}"]
    return "\n".join(out) + "\n"


# ================================================================ checking metadata files


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_metadata(path: Path) -> dict[str, Any]:
    """A metadata file's top-level elements: text, or a list when repeated."""
    root = ET.parse(path).getroot()
    out: dict[str, Any] = {"_type": _local(root.tag)}
    for child in root:
        tag = _local(child.tag)
        value: Any = child.text.strip() if child.text and len(child) == 0 else child
        if tag in out:
            out[tag] = out[tag] if isinstance(out[tag], list) else [out[tag]]
            out[tag].append(value)
        else:
            out[tag] = value
    return out


def field_file_problems(path: Path) -> list[str]:
    """What Salesforce would refuse in a ``*.field-meta.xml``: its own rules, read from the file alone."""
    data = read_metadata(path)
    name = path.name.removesuffix(".field-meta.xml")
    where = f"{path.parent.parent.name}.{name}"
    problems: list[str] = []
    base = name.removesuffix("__c")
    if len(base) > MAX_NAME:
        problems.append(f"{where}: a custom name has at most {MAX_NAME} characters before __c, this one {len(base)}")
    if data.get("fullName") != name:
        problems.append(f"{where}: fullName {data.get('fullName')!r} is not the file's name")
    kind = data.get("type")
    if kind in ("Number", "Currency", "Percent"):
        precision, scale = int(data.get("precision", 0)), int(data.get("scale", 0))
        if not 1 <= precision <= MAX_DIGITS:
            problems.append(f"{where}: precision {precision} ({precision - scale} digits before the point + {scale} "
                            f"after): Salesforce allows at most {MAX_DIGITS} digits in all")
        elif not 0 <= scale < precision:
            problems.append(f"{where}: scale {scale} leaves no digit before the point (precision {precision})")
    elif kind == "Text":
        length = int(data.get("length", 0))
        if not 1 <= length <= MAX_TEXT:
            problems.append(f"{where}: Text holds 1 to {MAX_TEXT} characters, not {length}")
    elif kind == "LongTextArea":
        length = int(data.get("length", 0))
        if not LONG_TEXT[0] <= length <= LONG_TEXT[1]:
            problems.append(f"{where}: Long Text holds {LONG_TEXT[0]} to {LONG_TEXT[1]:,} characters, not {length}")
    elif kind == "MasterDetail" and "required" in data:
        problems.append(f"{where}: a master-detail field cannot say whether it is required (it always is)")
    elif kind not in ("Date", "DateTime", "Checkbox", "Picklist", "Lookup", "MasterDetail", "Email", "Phone", "Url",
                      "TextArea"):
        problems.append(f"{where}: unknown field type {kind!r}")
    if data.get("externalId") == "true" and kind not in ("Text", "Number", "Email"):
        problems.append(f"{where}: an external id is a Text, Number or Email field, not {kind}")
    if data.get("unique") == "true" and data.get("externalId") != "true":
        problems.append(f"{where}: unique but not an external id: billsync cannot upsert by it")
    return problems


def metadata_problems(source: Path) -> list[str]:
    """Every problem of the ``*-meta.xml`` files under ``source`` (well-formed XML, field limits)."""
    problems: list[str] = []
    for path in sorted(source.rglob("*-meta.xml")):
        try:
            ET.parse(path)
        except ET.ParseError as exc:
            problems.append(f"{path}: not well-formed XML: {exc}")
            continue
        if path.name.endswith(".field-meta.xml"):
            problems.extend(field_file_problems(path))
    return problems


# ================================================================ writing and checking


def owned(path: Path) -> bool:
    parts = path.parts
    return path == DOC or path == PROJECT / "sfdx-project.json" or (
        parts[: len(SOURCE.parts)] == SOURCE.parts and len(parts) > len(SOURCE.parts)
        and parts[len(SOURCE.parts)] in GENERATED_DIRS)


def differences(root: Path = ROOT, files: dict[Path, str] | None = None) -> list[str]:
    """How the files under ``root`` differ from what would be generated (one line each)."""
    files = files if files is not None else generate()
    out = []
    for path, text in sorted(files.items()):
        target = root / path
        if not target.is_file():
            out.append(f"missing: {path}")
        elif target.read_text(encoding="utf-8") != text:
            out.append(f"differs: {path}")
    for directory in GENERATED_DIRS:
        for target in sorted((root / SOURCE / directory).rglob("*")):
            if target.is_file() and target.relative_to(root) not in files:
                out.append(f"not generated (stale): {target.relative_to(root)}")
    return out


def write(root: Path = ROOT, files: dict[Path, str] | None = None) -> list[Path]:
    """Write every generated file and remove stale ones from the generated folders; returns what changed."""
    files = files if files is not None else generate()
    changed = []
    for directory in GENERATED_DIRS:
        for target in sorted((root / SOURCE / directory).rglob("*"), reverse=True):
            relative = target.relative_to(root)
            if target.is_file() and relative not in files:
                target.unlink()
                changed.append(relative)
            elif target.is_dir() and not any(target.iterdir()):
                target.rmdir()
    for path, text in files.items():
        target = root / path
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only list the files that differ; exit 1 if any")
    args = parser.parse_args(argv)
    files = generate()
    problems = metadata_problems_of(files)
    if problems:
        print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return 2
    if args.check:
        found = differences(ROOT, files)
        print("\n".join(found) if found else "the package and docs/custom-objects.md are up to date")
        return 1 if found else 0
    changed = write(ROOT, files)
    print(f"{len(changed)} files written or removed" if changed else "nothing to change")
    return 0


def metadata_problems_of(files: dict[Path, str]) -> list[str]:
    """``metadata_problems`` of generated files, before they are written."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for path, text in files.items():
            if path.suffix == ".xml":
                target = Path(tmp) / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
        return metadata_problems(Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
