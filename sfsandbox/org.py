"""The org: Salesforce's record behaviour over the store.

create / update / delete / upsert with type checks, required fields, read-only
fields, unique external ids, validation rules, and the standard objects' derived
fields (Opportunity.IsWon/IsClosed, quote and line totals, quote sync, price book
rules, auto numbers). Every write runs inside ``store.transaction()``.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sfsandbox import ids
from sfsandbox.errors import ApiError, RecordError, not_found
from sfsandbox.schema import FieldSpec, ObjectDef, Schema
from sfsandbox.soql import FieldDef, QueryResult, SoqlError, execute
from sfsandbox.store import Change, Store

#: A blob sent base64-encoded in a JSON body: at most 37.5 MB of base64 text (Salesforce REST API,
#: "Insert or Update Blob Data"; multipart requests, which the sandbox does not take, allow 2 GB).
BASE64_JSON_LIMIT = 39_321_600
#: Salesforce answers a query of ContentDocumentLink only when it filters on Id, ContentDocumentId or LinkedEntityId.
_LINK_QUERY = re.compile(r"\bFROM\s+ContentDocumentLink\b", re.IGNORECASE)
_LINK_FILTER = re.compile(r"\bWHERE\b.*\b(Id|ContentDocumentId|LinkedEntityId)\s*(=|\bIN\b)", re.IGNORECASE | re.DOTALL)

DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.000+0000"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
STAGES = {  # StageName -> (IsClosed, IsWon, default Probability)
    "Prospecting": (False, False, 10),
    "Qualification": (False, False, 20),
    "Proposal": (False, False, 50),
    "Negotiation": (False, False, 80),
    "Closed Won": (True, True, 100),
    "Closed Lost": (True, False, 0),
}
_HUNDRED = Decimal(100)


@dataclass
class Caller:
    """Who makes a call: the token's user and connected app, and the URL's API version."""

    user_id: str
    client_id: str | None = None
    api_version: str = "59.0"

    @property
    def origin(self) -> str:
        return f"com/salesforce/api/rest/{self.api_version};client={self.client_id}" if self.client_id else ""


def format_datetime(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(DATETIME_FORMAT)


def parse_datetime(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.strip().replace(" ", "+"))
    except ValueError:
        return None
    if value.tzinfo is None:
        return None
    return value.astimezone(UTC)


def _round(value: Decimal, scale: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)


def _dec(value: Any) -> Decimal:
    return Decimal(value) if value is not None else Decimal(0)


class _SchemaView:
    """The SOQL engine's view of the schema."""

    def __init__(self, schema: Schema):
        self._schema = schema
        self._defs: dict[str, dict[str, FieldDef]] = {}
        for obj in schema.objects.values():
            self._defs[obj.name] = {
                f.name.lower(): FieldDef(f.name, f.type, f.reference_to, f.relationship_name)
                for f in obj.fields.values()
            }

    def object_name(self, name: str) -> str | None:
        obj = self._schema.get(name)
        return obj.name if obj else None

    def field(self, obj: str, name: str) -> FieldDef | None:
        return self._defs.get(obj, {}).get(name.lower())

    def fields(self, obj: str) -> list[FieldDef]:
        return list(self._defs.get(obj, {}).values())

    def child(self, obj: str, relationship_name: str) -> tuple[str, str] | None:
        definition = self._schema.get(obj)
        found = definition.children.get(relationship_name.lower()) if definition else None
        return (found[0], found[1]) if found else None


class _RecordSource:
    def __init__(self, store: Store):
        self._store = store

    def scan(self, obj: str, include_deleted: bool) -> Iterable[dict]:
        return self._store.scan(obj, include_deleted)

    def get(self, obj: str, record_id: str) -> dict | None:
        if not isinstance(record_id, str):
            return None
        return self._store.get(obj, ids.normalize(record_id) or record_id)

    def children(self, obj: str, fk_field: str, parent_id: str, include_deleted: bool) -> Iterable[dict]:
        return self._store.children(obj, fk_field, parent_id, include_deleted)


class Org:
    def __init__(self, schema: Schema, store: Store, clock: Callable[[], datetime], org_id: str, user_id: str):
        self.schema = schema
        self.store = store
        self.clock = clock
        self.org_id = org_id
        self.user_id = user_id
        self.default_currency = schema.currencies[0]
        self.schema_view = _SchemaView(schema)
        self.source = _RecordSource(store)
        # Called before each record write; may raise RecordError (fault injection).
        self.before_write: Callable[[str, str | None], None] | None = None

    def ensure_basics(self) -> None:
        """Every org has its integration user and a standard price book."""
        with self.store.lock:
            if self.store.get("User", self.user_id) is None:
                now = self._now()
                user = {spec.name: spec.default for spec in self.schema.objects["User"].fields.values()}
                user.update(Id=self.user_id, IsDeleted=False, FirstName="Integration", LastName="User",
                            Name="Integration User", Username="integration@billsync.sandbox",
                            Email="integration@billsync.sandbox", IsActive=True, CreatedDate=now,
                            CreatedById=self.user_id, LastModifiedDate=now, LastModifiedById=self.user_id,
                            SystemModstamp=now)
                self.store.bulk_insert("User", [user])
            if not any(b.get("IsStandard") for b in self.store.scan("Pricebook2")):
                now = self._now()
                book = {spec.name: spec.default for spec in self.schema.objects["Pricebook2"].fields.values()}
                book.update(Id=self.store.ids.next("01s"), IsDeleted=False, Name="Standard Price Book",
                            IsActive=True, IsStandard=True, CreatedDate=now, CreatedById=self.user_id,
                            LastModifiedDate=now, LastModifiedById=self.user_id, SystemModstamp=now)
                self.store.bulk_insert("Pricebook2", [book])

    def standard_pricebook_id(self) -> str:
        for book in self.store.scan("Pricebook2"):
            if book.get("IsStandard"):
                return book["Id"]
        raise LookupError("no standard price book")

    # ------------------------------------------------------------------ reads

    def object(self, name: str) -> ObjectDef:
        obj = self.schema.get(name)
        if obj is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return obj

    def query(self, soql: str, *, include_deleted: bool, api_version: str) -> QueryResult:
        if _LINK_QUERY.search(soql) and not _LINK_FILTER.search(soql):
            raise SoqlError("MALFORMED_QUERY", "Implementation restriction: ContentDocumentLink requires a filter by "
                            "a single Id on ContentDocumentId or LinkedEntityId using the equals operator or multiple "
                            "Id's using the IN operator.")
        with self.store.lock:
            return execute(soql, self.schema_view, self.source, now=self.clock(),
                           include_deleted=include_deleted, api_version=api_version)

    def read(self, obj: ObjectDef, record_id: str, fields: list[str] | None, version: str) -> dict:
        record = self._live(obj, record_id)
        return self.shape(obj, record, fields, version)

    def shape(self, obj: ObjectDef, record: dict, fields: list[str] | None, version: str) -> dict:
        out: dict[str, Any] = {"attributes": {"type": obj.name,
                                              "url": f"/services/data/v{version}/sobjects/{obj.name}/{record['Id']}"}}
        if fields:
            for name in fields:
                spec = obj.field(name)
                if spec is None:
                    raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on entity '{obj.name}'. "
                                   "If you are attempting to use a custom field, be sure to append the '__c' after "
                                   "the custom field name. Please reference your WSDL or the describe call for the "
                                   "appropriate names.")
                out[spec.name] = record.get(spec.name)
        else:
            for name in obj.fields:
                out[name] = record.get(name)
        return out

    def _live(self, obj: ObjectDef, record_id: str) -> dict:
        rid = ids.normalize(record_id)
        record = self.store.get(obj.name, rid) if rid else None
        if record is None:
            raise not_found()
        if record["IsDeleted"]:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        return record

    def find_by_external_id(self, obj: ObjectDef, field_name: str, value: str) -> tuple[FieldSpec, list[str]]:
        spec = obj.field(field_name)
        if spec is None or not (spec.external_id or spec.name == "Id"):
            raise ApiError(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field_name}")
        if spec.name == "Id":
            rid = ids.normalize(value)
            record = self.store.get(obj.name, rid) if rid else None
            return spec, [rid] if record is not None and not record["IsDeleted"] else []
        return spec, self.store.find_by_key(obj.name, spec.name, self._key_value(spec, value))

    @staticmethod
    def _key_value(spec: FieldSpec, value: Any) -> Any:
        if spec.type in ("double", "currency", "percent", "int") and isinstance(value, str):
            try:
                return Decimal(value) if spec.type != "int" else int(value)
            except (InvalidOperation, ValueError):
                return value
        return value

    # ----------------------------------------------------------------- writes

    def create(self, obj: ObjectDef, body: dict, caller: Caller) -> str:
        values, refs = self.prepare(obj, body, creating=True)
        with self.store.transaction():
            return self._insert(obj, values, refs, caller)

    def update(self, obj: ObjectDef, record_id: str, body: dict, caller: Caller) -> None:
        values, refs = self.prepare(obj, body, creating=False, record_id=record_id)
        with self.store.transaction():
            old = self._live(obj, record_id)
            self._update(obj, old, values, refs, caller)

    def delete(self, obj: ObjectDef, record_id: str, caller: Caller) -> None:
        with self.store.transaction():
            record = self._live(obj, record_id)
            self._check_fault(obj, record["Id"])
            self._delete(obj, record, caller)

    def upsert(self, obj: ObjectDef, field_name: str, value: str, body: dict, caller: Caller,
               *, update_only: bool = False) -> tuple[str, bool]:
        spec, _ = self.find_by_external_id(obj, field_name, value)
        values, refs = self.prepare(obj, body, creating=True, upsert_field=spec)
        with self.store.transaction():
            return self.upsert_prepared(obj, spec, value, values, refs, caller, update_only=update_only)

    def upsert_prepared(self, obj: ObjectDef, spec: FieldSpec, value: Any, values: dict, refs: dict,
                        caller: Caller, *, update_only: bool = False) -> tuple[str, bool]:
        _, matches = self.find_by_external_id(obj, spec.name, value)
        if len(matches) > 1:
            version = caller.api_version
            raise ApiError(300, "MULTIPLE_CHOICES", "more than one record matches",
                           body=[f"/services/data/v{version}/sobjects/{obj.name}/{rid}" for rid in matches])
        if matches:
            old = self.store.get(obj.name, matches[0])
            assert old is not None
            update_values = {k: v for k, v in values.items() if k != spec.name}
            self._update(obj, old, update_values, refs, caller)
            return old["Id"], False
        if update_only or spec.name == "Id":
            raise RecordError("NOT_FOUND", "The requested resource does not exist", status=404)
        values = dict(values)
        values[spec.name] = self._key_value(spec, value)
        return self._insert(obj, values, refs, caller), True

    # ------------------------------------------------------------ preparation

    def prepare(self, obj: ObjectDef, body: Any, *, creating: bool, record_id: str | None = None,
                upsert_field: FieldSpec | None = None) -> tuple[dict, dict]:
        """Body -> (canonical values, relationship references). Raises ApiError for JSON
        that does not fit a field's type, RecordError for unknown or read-only fields."""
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        values: dict[str, Any] = {}
        refs: dict[str, tuple[ObjectDef, FieldSpec, Any]] = {}
        readonly: list[str] = []
        for key, raw in body.items():
            if key == "attributes":
                continue
            spec = obj.field(key)
            if spec is None:
                rel = obj.relationships.get(key.lower())
                if rel is not None and isinstance(raw, dict):
                    refs[rel.name] = self._relationship_ref(rel, raw)
                    continue
                raise RecordError("INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}", [key])
            if spec.name == "Id":
                if creating and upsert_field is None:
                    raise RecordError("INVALID_FIELD", "Record ID: cannot specify Id in an insert call", ["Id"])
                if record_id is not None and ids.normalize(str(raw)) != ids.normalize(record_id):
                    raise RecordError("INVALID_FIELD", "Record ID: the Id in the body does not match the URL", ["Id"])
                continue
            if not (spec.createable if creating else spec.updateable):
                readonly.append(spec.name)
                continue
            values[spec.name] = self._coerce(obj, spec, raw)
        if readonly:
            raise RecordError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(readonly)}. Please check the security settings of "
                "this field and verify that it is read/write for your profile or permission set.",
                readonly,
            )
        return values, refs

    def _relationship_ref(self, rel: FieldSpec, raw: dict) -> tuple[ObjectDef, FieldSpec, Any]:
        target = self.schema.get(rel.reference_to or "")
        assert target is not None
        keys = [k for k in raw if k != "attributes"]
        if len(keys) != 1:
            raise RecordError("INVALID_FIELD", f"{rel.relationship_name}: give exactly one external ID field",
                              [rel.name])
        spec = target.field(keys[0])
        if spec is None or not (spec.external_id or spec.name == "Id"):
            raise RecordError("INVALID_FIELD", f"Field name provided, {keys[0]} is not an External ID or indexed "
                              f"field for {target.name}", [rel.name])
        return target, spec, raw[keys[0]]

    def _coerce(self, obj: ObjectDef, spec: FieldSpec, raw: Any) -> Any:
        if raw is None:
            return None
        kind = spec.type

        def bad() -> ApiError:
            shown = raw if not isinstance(raw, dict | list) else type(raw).__name__
            return ApiError(400, "JSON_PARSER_ERROR",
                            f"Cannot deserialize instance of {kind} from value {shown} or request may be missing a "
                            f"required field: {obj.name}.{spec.name}")

        if kind == "boolean":
            if isinstance(raw, bool):
                return raw
            raise bad()
        if kind == "base64":
            if not isinstance(raw, str):
                raise bad()
            if len(raw) > BASE64_JSON_LIMIT:
                raise ApiError(400, "JSON_PARSER_ERROR", f"{obj.name}.{spec.name}: more than 37.5 MB of base64-encoded "
                               "data in a JSON body; send larger files as a multipart request")
            return raw
        if isinstance(raw, dict | list):
            raise bad()
        if kind in ("currency", "double", "percent", "int"):
            if isinstance(raw, bool):
                raise bad()
            try:
                number = Decimal(raw) if not isinstance(raw, Decimal) else raw
            except (InvalidOperation, ValueError, TypeError):
                raise bad() from None
            if not number.is_finite():
                raise bad()
            if kind == "int":
                if number != number.to_integral_value():
                    raise bad()
                return int(number)
            return number
        if kind == "date":
            if isinstance(raw, str) and _DATE.match(raw):
                try:
                    date.fromisoformat(raw)
                    return raw
                except ValueError:
                    pass
            raise bad()
        if kind == "datetime":
            moment = parse_datetime(raw) if isinstance(raw, str) else None
            if moment is None:
                raise bad()
            return format_datetime(moment)
        if isinstance(raw, bool):
            return "true" if raw else "false"
        if isinstance(raw, int | Decimal):
            return str(raw)
        return raw

    # ------------------------------------------------------------------ saving

    def _now(self) -> str:
        return format_datetime(self.clock())

    def _check_fault(self, obj: ObjectDef, record_id: str | None) -> None:
        if self.before_write is not None:
            self.before_write(obj.name, record_id)

    def _insert(self, obj: ObjectDef, values: dict, refs: dict, caller: Caller) -> str:
        self._check_fault(obj, None)
        now = self._now()
        record: dict[str, Any] = {}
        for spec in obj.fields.values():
            record[spec.name] = spec.default
        rid = self.store.ids.next(obj.key_prefix)
        record.update(Id=rid, IsDeleted=False, CreatedDate=now, CreatedById=caller.user_id,
                      LastModifiedDate=now, LastModifiedById=caller.user_id, SystemModstamp=now)
        if "OwnerId" in obj.fields:
            record["OwnerId"] = caller.user_id
        record.update(values)
        self._resolve_refs(obj, record, refs)
        self._finish(obj, record, None, caller)
        self.store.put(obj.name, record, Change(obj.name, rid, "CREATE", [], record, True,
                                                caller.origin, caller.user_id))
        self._after_save(obj, record, None, caller)
        return rid

    def _update(self, obj: ObjectDef, old: dict, values: dict, refs: dict, caller: Caller) -> None:
        self._check_fault(obj, old["Id"])
        now = self._now()
        record = dict(old)
        record.update(values)
        self._resolve_refs(obj, record, refs)
        # Create-only fields may be repeated unchanged (an upsert sends one body for
        # both cases); changing them is refused.
        fixed = [k for k in (*values, *refs) if not obj.fields[k].updateable
                 and ids.normalize(str(record.get(k))) != ids.normalize(str(old.get(k))) and record.get(k) != old.get(k)]
        if fixed:
            raise RecordError("INVALID_FIELD_FOR_INSERT_UPDATE",
                              f"Unable to create/update fields: {', '.join(fixed)}. Please check the security "
                              "settings of this field and verify that it is read/write for your profile or "
                              "permission set.", fixed)
        self._finish(obj, record, old, caller)
        changed = [k for k in obj.fields if record.get(k) != old.get(k)
                   and k not in ("SystemModstamp", "LastModifiedDate")]
        record["LastModifiedDate"] = now
        record["LastModifiedById"] = caller.user_id
        record["SystemModstamp"] = now
        self.store.put(obj.name, record, Change(obj.name, record["Id"], "UPDATE", [*changed, "LastModifiedDate"],
                                                record, True, caller.origin, caller.user_id))
        self._after_save(obj, record, old, caller)

    def system_update(self, obj_name: str, record_id: str, values: dict, caller: Caller | None = None, *,
                      touch: bool = False) -> None:
        """A change made by the platform (roll-ups, sync flags): SystemModstamp moves, LastModifiedDate not.

        ``touch``: SystemModstamp moves even when no value changes, as when Salesforce recalculates
        a parent's roll-ups after a child record changed.
        """
        old = self.store.get(obj_name, record_id)
        if old is None or old["IsDeleted"]:
            return
        changed = [k for k, v in values.items() if old.get(k) != v]
        if not changed and not touch:
            return
        record = dict(old)
        record.update(values)
        record["SystemModstamp"] = self._now()
        self.store.put(obj_name, record, Change(obj_name, record_id, "UPDATE", changed, record, False,
                                                caller.origin if caller else "",
                                                caller.user_id if caller else None))
        obj = self.schema.get(obj_name)
        assert obj is not None
        self._after_save(obj, record, old, caller)

    def _resolve_refs(self, obj: ObjectDef, record: dict, refs: dict) -> None:
        for fk, (target, spec, value) in refs.items():
            if value is None:
                record[fk] = None
                continue
            if spec.name == "Id":
                rid = ids.normalize(str(value))
                found = [rid] if rid and (r := self.store.get(target.name, rid)) and not r["IsDeleted"] else []
            else:
                found = self.store.find_by_key(target.name, spec.name, self._key_value(spec, value))
            if not found:
                raise RecordError("INVALID_FIELD", f"Foreign key external ID: {value} not found for field "
                                  f"{spec.name} in entity {target.name}", [fk])
            if len(found) > 1:
                raise RecordError("INVALID_FIELD", f"More than 1 record found for External ID field: {spec.name} "
                                  f"= {value} in entity {target.name}", [fk])
            record[fk] = found[0]

    def _finish(self, obj: ObjectDef, record: dict, old: dict | None, caller: Caller) -> None:
        """Field checks, derived fields, required fields, validation rules, uniqueness."""
        for spec in obj.fields.values():
            value = record.get(spec.name)
            if value is None or spec.system:
                continue
            if old is not None and old.get(spec.name) == value:
                continue
            record[spec.name] = self._check_value(obj, spec, value)
        derive = getattr(self, f"_derive_{obj.name}", None)
        if derive is not None:
            derive(record, old, caller)
        if obj.custom and "Name" in obj.fields and not record.get("Name"):
            record["Name"] = record["Id"][:15] if obj.fields["Name"].type == "string" else record.get("Name")
        if "CurrencyIsoCode" in obj.fields and not record.get("CurrencyIsoCode"):
            record["CurrencyIsoCode"] = self.default_currency
        missing = [s.name for s in obj.fields.values() if s.required and record.get(s.name) in (None, "")]
        if missing:
            raise RecordError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
        for rule in obj.rules:
            if rule.formula.evaluate(record):
                raise RecordError("FIELD_CUSTOM_VALIDATION_EXCEPTION", rule.message,
                                  [rule.error_field] if rule.error_field else [])
        for spec in obj.fields.values():
            if spec.unique and spec.name != "Id" and record.get(spec.name) is not None:
                clash = [i for i in self.store.find_by_key(obj.name, spec.name, record[spec.name]) if i != record["Id"]]
                if clash:
                    raise RecordError("DUPLICATE_VALUE", f"duplicate value found: {spec.name} duplicates value on "
                                      f"record with id: {clash[0]}", [])

    def _check_value(self, obj: ObjectDef, spec: FieldSpec, value: Any) -> Any:
        kind = spec.type
        if kind in ("string", "textarea", "email", "phone", "url", "picklist", "multipicklist"):
            if spec.length and len(value) > spec.length:
                raise RecordError("STRING_TOO_LONG", f"{spec.label}: data value too large: {value[:40]} "
                                  f"(max length={spec.length})", [spec.name])
            if kind == "picklist" and spec.restricted and value not in spec.values:
                raise RecordError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                  f"{spec.label}: bad value for restricted picklist field: {value}", [spec.name])
            return value
        if kind in ("currency", "double", "percent"):
            if spec.precision:
                if -value.as_tuple().exponent > spec.scale:
                    value = _round(value, spec.scale)
                whole = abs(value).to_integral_value(rounding="ROUND_DOWN")
                if len(str(whole)) > max(spec.precision - spec.scale, 1) and whole != 0:
                    raise RecordError("NUMBER_OUTSIDE_VALID_RANGE", f"{spec.label}: value outside of valid range on "
                                      f"numeric field: {value}", [spec.name])
            return value
        if kind == "reference":
            rid = ids.normalize(value)
            if rid is None:
                raise RecordError("MALFORMED_ID", f"{spec.label}: id value of incorrect type: {value}", [spec.name])
            target = self.schema.get(spec.reference_to or "")
            if target is None or rid[:3] != target.key_prefix:
                raise RecordError("FIELD_INTEGRITY_EXCEPTION", f"field integrity exception: {spec.name} (id value of "
                                  f"incorrect type: {value})", [spec.name])
            parent = self.store.get(target.name, rid)
            if parent is None or parent["IsDeleted"]:
                raise RecordError("INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {value}", [spec.name])
            return rid
        return value

    def _parent(self, obj_name: str, record_id: str | None) -> dict | None:
        if not record_id:
            return None
        parent = self.store.get(obj_name, record_id)
        return parent if parent is not None and not parent["IsDeleted"] else None

    # -------------------------------------------------------------- deleting

    def _delete(self, obj: ObjectDef, record: dict, caller: Caller) -> None:
        if obj.name == "PricebookEntry":
            raise RecordError("DELETE_FAILED", "Price book entries cannot be deleted through the API: deactivate "
                              "the entry (IsActive = false) instead")
        if obj.name == "Pricebook2" and record.get("IsStandard"):
            raise RecordError("DELETE_FAILED", "The standard price book cannot be deleted")
        now = self._now()
        deleted = dict(record)
        deleted.update(IsDeleted=True, SystemModstamp=now)
        self.store.put(obj.name, deleted, Change(obj.name, record["Id"], "DELETE", [], record, True,
                                                 caller.origin, caller.user_id))
        self.store.log_delete(obj.name, record["Id"], now)
        for child_obj, fk, child_id in list(self.store.referencing(obj.name, record["Id"])):
            child_def = self.schema.objects[child_obj]
            child = self.store.get(child_obj, child_id)
            if child is None or child["IsDeleted"]:
                continue
            if child_def.fields[fk].cascade_delete:
                self._delete(child_def, child, caller)
            else:
                self.system_update(child_obj, child_id, {fk: None}, caller)
        self._after_save(obj, deleted, record, caller)

    # ------------------------------------------------ standard object behaviour

    def _after_save(self, obj: ObjectDef, record: dict, old: dict | None, caller: Caller | None) -> None:
        after = getattr(self, f"_after_{obj.name}", None)
        if after is not None:
            after(record, old, caller)

    def _derive_Contact(self, record: dict, old: dict | None, caller: Caller) -> None:  # noqa: N802
        record["Name"] = " ".join(p for p in (record.get("FirstName"), record.get("LastName")) if p)

    _derive_User = _derive_Contact

    def _derive_Opportunity(self, record: dict, old: dict | None, caller: Caller) -> None:  # noqa: N802
        stage = record.get("StageName")
        if stage in STAGES:
            closed, won, probability = STAGES[stage]
            record["IsClosed"], record["IsWon"] = closed, won
            if old is None:
                if record.get("Probability") is None:
                    record["Probability"] = Decimal(probability)
            elif old.get("StageName") != stage and record.get("Probability") == old.get("Probability"):
                record["Probability"] = Decimal(probability)
        if not record.get("CurrencyIsoCode"):
            account = self._parent("Account", record.get("AccountId"))
            record["CurrencyIsoCode"] = (account or {}).get("CurrencyIsoCode") or self.default_currency
        synced = record.get("SyncedQuoteId")
        if synced:
            quote = self._parent("Quote", synced)
            if quote is None or quote.get("OpportunityId") != record["Id"]:
                raise RecordError("FIELD_INTEGRITY_EXCEPTION", "field integrity exception: SyncedQuoteId (the quote "
                                  "must belong to this opportunity)", ["SyncedQuoteId"])
            record["Amount"] = quote.get("TotalPrice")
        else:
            lines = self.store.children("OpportunityLineItem", "OpportunityId", record["Id"])
            record["HasOpportunityLineItem"] = bool(lines)
            if lines:
                record["Amount"] = sum((_dec(li.get("TotalPrice")) for li in lines), Decimal("0.00"))

    def _after_Opportunity(self, record: dict, old: dict | None, caller: Caller | None) -> None:  # noqa: N802
        before = (old or {}).get("SyncedQuoteId")
        after = record.get("SyncedQuoteId") if not record["IsDeleted"] else None
        if before != after:
            if before:
                self.system_update("Quote", before, {"IsSyncing": False}, caller)
            if after:
                self.system_update("Quote", after, {"IsSyncing": True}, caller)

    def _recompute_opportunity(self, opp_id: str | None, caller: Caller | None, *, touch: bool = False) -> None:
        """The Opportunity's roll-ups from its lines (or its synced quote). ``touch``: a line changed,
        so SystemModstamp moves even when no roll-up does (a quantity change on a line priced 0)."""
        opp = self._parent("Opportunity", opp_id)
        if opp is None:
            return
        lines = self.store.children("OpportunityLineItem", "OpportunityId", opp["Id"])
        values: dict[str, Any] = {"HasOpportunityLineItem": bool(lines)}
        if opp.get("SyncedQuoteId"):
            quote = self._parent("Quote", opp["SyncedQuoteId"])
            if quote is not None:
                values["Amount"] = quote.get("TotalPrice")
        elif lines:
            values["Amount"] = sum((_dec(li.get("TotalPrice")) for li in lines), Decimal("0.00"))
        self.system_update("Opportunity", opp["Id"], values, caller, touch=touch)

    def _pricebook_entry(self, record: dict, currency: str | None, pricebook_id: str | None) -> dict:
        entry = self._parent("PricebookEntry", record.get("PricebookEntryId"))
        if entry is None and record.get("Product2Id") and pricebook_id:
            for candidate in self.store.children("PricebookEntry", "Product2Id", record["Product2Id"]):
                if candidate["Pricebook2Id"] == pricebook_id and candidate.get("CurrencyIsoCode") == currency:
                    entry = candidate
                    record["PricebookEntryId"] = candidate["Id"]
                    break
        if entry is None:
            raise RecordError("REQUIRED_FIELD_MISSING", "Required fields are missing: [PricebookEntryId]",
                              ["PricebookEntryId"])
        if currency and entry.get("CurrencyIsoCode") != currency:
            raise RecordError("FIELD_INTEGRITY_EXCEPTION", "field integrity exception: PricebookEntryId (pricebook "
                              "entry currency code does not match the parent's currency code)", ["PricebookEntryId"])
        if pricebook_id and entry["Pricebook2Id"] != pricebook_id:
            raise RecordError("FIELD_INTEGRITY_EXCEPTION", "field integrity exception: PricebookEntryId (pricebook "
                              "entry is in a different pricebook than the one assigned to the parent)",
                              ["PricebookEntryId"])
        return entry

    def _derive_OpportunityLineItem(self, record: dict, old: dict | None, caller: Caller) -> None:  # noqa: N802
        opp = self._parent("Opportunity", record.get("OpportunityId"))
        if opp is None:
            return  # REQUIRED_FIELD_MISSING follows
        if old is None:
            entry = self._pricebook_entry(record, opp.get("CurrencyIsoCode"), opp.get("Pricebook2Id"))
            product = self._parent("Product2", entry["Product2Id"]) or {}
            record.update(Product2Id=entry["Product2Id"], ListPrice=entry.get("UnitPrice"),
                          ProductCode=product.get("ProductCode"), CurrencyIsoCode=opp.get("CurrencyIsoCode"),
                          Name=f"{opp.get('Name')} {product.get('Name')}"[:376])
            if not opp.get("Pricebook2Id"):
                self.system_update("Opportunity", opp["Id"], {"Pricebook2Id": entry["Pricebook2Id"]}, caller)
            if record.get("UnitPrice") is not None and record.get("TotalPrice") is not None:
                raise RecordError("FIELD_INTEGRITY_EXCEPTION", "field integrity exception: TotalPrice (only one of "
                                  "unit price or total price may be specified)", ["TotalPrice"])
            if record.get("UnitPrice") is None and record.get("TotalPrice") is None:
                raise RecordError("REQUIRED_FIELD_MISSING", "Required fields are missing: [UnitPrice]", ["UnitPrice"])
        quantity = record.get("Quantity")
        if quantity is None:
            return
        discount = _dec(record.get("Discount"))
        factor = (_HUNDRED - discount) / _HUNDRED
        total_given = record.get("TotalPrice") is not None and (old is None or record["TotalPrice"] != old.get("TotalPrice"))
        if total_given and (old is None or record.get("UnitPrice") == old.get("UnitPrice")):
            divisor = Decimal(quantity) * factor
            record["UnitPrice"] = _round(Decimal(record["TotalPrice"]) / divisor, 2) if divisor else Decimal("0.00")
        subtotal = _round(Decimal(quantity) * _dec(record.get("UnitPrice")), 2)
        record["Subtotal"] = subtotal
        if not total_given:
            record["TotalPrice"] = _round(subtotal * factor, 2)

    def _after_OpportunityLineItem(self, record: dict, old: dict | None, caller: Caller | None) -> None:  # noqa: N802
        # As in Salesforce: saving or deleting a line recalculates the Opportunity's roll-ups, which
        # moves its SystemModstamp even when Amount stays the same.
        self._recompute_opportunity(record.get("OpportunityId"), caller, touch=True)

    def _derive_Quote(self, record: dict, old: dict | None, caller: Caller) -> None:  # noqa: N802
        opp = self._parent("Opportunity", record.get("OpportunityId"))
        if opp is not None:
            record["AccountId"] = opp.get("AccountId")
            record["CurrencyIsoCode"] = opp.get("CurrencyIsoCode")
            if not record.get("Pricebook2Id"):
                record["Pricebook2Id"] = opp.get("Pricebook2Id")
        if old is None:
            record["QuoteNumber"] = f"{self.store.next_autonumber('Quote'):08d}"
        self._quote_totals(record)

    def _quote_totals(self, record: dict) -> None:
        lines = self.store.children("QuoteLineItem", "QuoteId", record["Id"])
        subtotal = sum((_dec(li.get("Subtotal")) for li in lines), Decimal("0.00"))
        total = sum((_dec(li.get("TotalPrice")) for li in lines), Decimal("0.00"))
        record["Subtotal"] = subtotal
        record["TotalPrice"] = total
        record["LineItemCount"] = len(lines)
        record["Discount"] = _round((subtotal - total) / subtotal * _HUNDRED, 2) if subtotal else None
        record["GrandTotal"] = total + _dec(record.get("Tax")) + _dec(record.get("ShippingHandling"))

    def _after_Quote(self, record: dict, old: dict | None, caller: Caller | None) -> None:  # noqa: N802
        opp = self._parent("Opportunity", record.get("OpportunityId"))
        if opp is not None and opp.get("SyncedQuoteId") == record["Id"]:
            if record["IsDeleted"]:
                return  # the lookup is cleared by the delete
            if old is None or old.get("TotalPrice") != record.get("TotalPrice"):
                self._recompute_opportunity(opp["Id"], caller)

    def _derive_QuoteLineItem(self, record: dict, old: dict | None, caller: Caller) -> None:  # noqa: N802
        quote = self._parent("Quote", record.get("QuoteId"))
        if quote is None:
            return
        if old is None:
            entry = self._pricebook_entry(record, quote.get("CurrencyIsoCode"), quote.get("Pricebook2Id"))
            record.update(Product2Id=entry["Product2Id"], ListPrice=entry.get("UnitPrice"),
                          CurrencyIsoCode=quote.get("CurrencyIsoCode"),
                          LineNumber=f"{self.store.next_autonumber('QuoteLineItem'):07d}")
        discount = record.get("Discount")
        if discount is not None and not (0 <= discount <= 100):
            raise RecordError("NUMBER_OUTSIDE_VALID_RANGE", "Discount: a discount is a percentage between 0 and 100",
                              ["Discount"])
        quantity, price = record.get("Quantity"), record.get("UnitPrice")
        if quantity is None or price is None:
            return
        subtotal = _round(Decimal(quantity) * Decimal(price), 2)
        record["Subtotal"] = subtotal
        record["TotalPrice"] = _round(subtotal * (_HUNDRED - _dec(discount)) / _HUNDRED, 2)

    def _after_QuoteLineItem(self, record: dict, old: dict | None, caller: Caller | None) -> None:  # noqa: N802
        quote = self._parent("Quote", record.get("QuoteId"))
        if quote is not None:
            updated = dict(quote)
            self._quote_totals(updated)
            self.system_update("Quote", quote["Id"], {k: updated[k] for k in
                                                      ("Subtotal", "TotalPrice", "LineItemCount", "Discount",
                                                       "GrandTotal")}, caller)
            # A synced quote's lines are synced to its Opportunity's lines, so the Opportunity moves
            # too; when the quote's total changed, _after_Quote has recomputed it already.
            opp = self._parent("Opportunity", quote.get("OpportunityId"))
            if (opp is not None and opp.get("SyncedQuoteId") == quote["Id"]
                    and updated.get("TotalPrice") == quote.get("TotalPrice")):
                self._recompute_opportunity(opp["Id"], caller, touch=True)

    def _derive_PricebookEntry(self, record: dict, old: dict | None, caller: Caller) -> None:  # noqa: N802
        product = self._parent("Product2", record.get("Product2Id"))
        if product is not None:
            record["Name"] = product.get("Name")
            record["ProductCode"] = product.get("ProductCode")
        if old is not None:
            return
        book = self._parent("Pricebook2", record.get("Pricebook2Id"))
        if book is None or product is None:
            return
        currency = record.get("CurrencyIsoCode") or self.default_currency
        record["CurrencyIsoCode"] = currency
        siblings = [e for e in self.store.children("PricebookEntry", "Product2Id", product["Id"])
                    if e.get("CurrencyIsoCode") == currency]
        if any(e["Pricebook2Id"] == book["Id"] for e in siblings):
            raise RecordError("DUPLICATE_VALUE", "This price definition already exists in this price book", [])
        if not book.get("IsStandard"):
            standard = [e for e in siblings if (self._parent("Pricebook2", e["Pricebook2Id"]) or {}).get("IsStandard")]
            if not standard:
                raise RecordError("STANDARD_PRICE_NOT_DEFINED", "Before creating a custom price, create a standard "
                                  "price.", [])
            if record.get("UseStandardPrice") and record.get("UnitPrice") is None:
                record["UnitPrice"] = standard[0].get("UnitPrice")
        elif record.get("UseStandardPrice"):
            raise RecordError("FIELD_INTEGRITY_EXCEPTION", "field integrity exception: UseStandardPrice (the "
                              "standard price book cannot use the standard price)", ["UseStandardPrice"])

    def _derive_Contract(self, record: dict, old: dict | None, caller: Caller) -> None:  # noqa: N802
        if old is None:
            if record.get("Status") not in (None, "Draft"):
                raise RecordError("FIELD_INTEGRITY_EXCEPTION", "field integrity exception: Status (a contract is "
                                  "created in Draft)", ["Status"])
            record["ContractNumber"] = f"{self.store.next_autonumber('Contract'):08d}"
        start, term = record.get("StartDate"), record.get("ContractTerm")
        if start and term:
            d = date.fromisoformat(start)
            months = d.month - 1 + int(term)
            year, month = d.year + months // 12, months % 12 + 1
            end = date(year, month, min(d.day, calendar.monthrange(year, month)[1]))
            record["EndDate"] = (end - timedelta(days=1)).isoformat()

    def _derive_Order(self, record: dict, old: dict | None, caller: Caller) -> None:  # noqa: N802
        if old is None:
            record["OrderNumber"] = f"{self.store.next_autonumber('Order'):08d}"
        elif old.get("StatusCode") == "Activated" and record.get("AccountId") != old.get("AccountId"):
            raise RecordError("FIELD_INTEGRITY_EXCEPTION", "field integrity exception: AccountId (only while the "
                              "order is a draft)", ["AccountId"])
        record["StatusCode"] = record.get("Status")
        if record.get("Status") == "Activated" and not record.get("ActivatedDate"):
            record["ActivatedDate"] = self._now()

    def _derive_Invoice_Line__c(self, record: dict, old: dict | None, caller: Caller) -> None:  # noqa: N802
        invoice = self._parent("Invoice__c", record.get("Invoice__c"))
        if invoice is not None:
            record["CurrencyIsoCode"] = invoice.get("CurrencyIsoCode")

    def _derive_Credit_Note_Line__c(self, record: dict, old: dict | None, caller: Caller) -> None:  # noqa: N802
        note = self._parent("Credit_Note__c", record.get("Credit_Note__c"))
        if note is not None:  # a detail record takes its master's currency
            record["CurrencyIsoCode"] = note.get("CurrencyIsoCode")

    def _derive_Refund__c(self, record: dict, old: dict | None, caller: Caller) -> None:  # noqa: N802
        payment = self._parent("Payment__c", record.get("Payment__c"))
        if payment is not None:
            record["CurrencyIsoCode"] = payment.get("CurrencyIsoCode")

    # ----------------------------------------------------------- files (ContentVersion)

    def _any_record(self, value: Any) -> dict | None:
        """The live record an id of any object names (a polymorphic reference)."""
        rid = ids.normalize(str(value)) if value else None
        obj = self.schema.object_for_id(rid) if rid else None
        record = self.store.get(obj.name, rid) if obj is not None and rid else None
        return record if record is not None and not record["IsDeleted"] else None

    def _derive_ContentVersion(self, record: dict, old: dict | None, caller: Caller) -> None:  # noqa: N802
        """A new version: its bytes (base64 in ``VersionData``) are kept aside and the field reads as
        the URL of the bytes, as in Salesforce; size, MD5 checksum and file type are derived."""
        if old is not None:
            # A version's file cannot change: the same bytes again (an upsert repeating its body) are
            # kept as they are; other bytes, another name or another first record are refused.
            if record.get("VersionData") != old.get("VersionData"):
                try:
                    same = base64.b64decode(record.get("VersionData") or "", validate=True) == base64.b64decode(
                        old.get("_VersionData__base64") or "")
                except (binascii.Error, ValueError):
                    same = False
                if not same:
                    raise RecordError("INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: VersionData. "
                                      "A ContentVersion's file cannot be updated; insert a new version instead.",
                                      ["VersionData"])
                record["VersionData"] = old.get("VersionData")
            changed = [f for f in ("PathOnClient", "FirstPublishLocationId")
                       if record.get(f) and ids.normalize(str(record.get(f))) != old.get(f) and record.get(f) != old.get(f)]
            if changed:
                raise RecordError("INVALID_FIELD_FOR_INSERT_UPDATE", f"Unable to create/update fields: "
                                  f"{', '.join(changed)}.", changed)
            return
        data = record.get("VersionData")
        if record.get("ContentLocation", "S") == "S":
            missing = [f for f in ("PathOnClient", "VersionData") if not record.get(f)]
            if missing:
                raise RecordError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]",
                                  missing)
        try:
            content = base64.b64decode(data or "", validate=True)
        except (binascii.Error, ValueError):
            raise RecordError("INVALID_FIELD", "VersionData: not valid base64 data", ["VersionData"]) from None
        location = record.get("FirstPublishLocationId")
        if location:
            if record.get("ContentDocumentId"):
                raise RecordError("FIELD_INTEGRITY_EXCEPTION", "FirstPublishLocationId can only be set on the first "
                                  "version of a file", ["FirstPublishLocationId"])
            if self._any_record(location) is None:
                raise RecordError("INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {location}",
                                  ["FirstPublishLocationId"])
            record["FirstPublishLocationId"] = ids.normalize(str(location))
        path = str(record.get("PathOnClient") or "")
        extension = path.rsplit(".", 1)[-1].lower() if "." in path else ""
        # Kept as base64 text so the record stays JSON, as the persistent sandbox stores it.
        record.update(_VersionData__base64=base64.b64encode(content).decode("ascii"), ContentSize=len(content),
                      FileExtension=extension,
                      FileType=extension.upper() or "UNKNOWN", Checksum=hashlib.md5(content).hexdigest(),  # noqa: S324
                      IsLatest=True,
                      VersionData=f"/services/data/v{caller.api_version}/sobjects/ContentVersion/{record['Id']}/"
                                  "VersionData")
        document = self._parent("ContentDocument", record.get("ContentDocumentId"))
        if record.get("ContentDocumentId") and document is None:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id: "
                              f"{record['ContentDocumentId']}", ["ContentDocumentId"])
        versions = [r for r in self.store.scan("ContentVersion")
                    if r.get("ContentDocumentId") == document["Id"]] if document is not None else []
        record["VersionNumber"] = str(len(versions) + 1)

    def _after_ContentVersion(self, record: dict, old: dict | None, caller: Caller | None) -> None:  # noqa: N802
        """The first version creates its ContentDocument and links it to its owner and to
        ``FirstPublishLocationId``; a later one becomes the document's latest."""
        if old is not None or caller is None:
            return
        document_id = record.get("ContentDocumentId")
        if not document_id:
            document_obj = self.object("ContentDocument")
            document_id = self._insert(document_obj, {
                "Title": record.get("Title"), "FileType": record.get("FileType"),
                "FileExtension": record.get("FileExtension"), "ContentSize": record.get("ContentSize"),
                "LatestPublishedVersionId": record["Id"], "PublishStatus": "P"}, {}, caller)
            self.system_update("ContentVersion", record["Id"], {"ContentDocumentId": document_id})
            link = self.object("ContentDocumentLink")
            self._insert(link, {"ContentDocumentId": document_id, "LinkedEntityId": caller.user_id,
                                "ShareType": "I", "Visibility": "AllUsers"}, {}, caller)
            if record.get("FirstPublishLocationId"):
                self._insert(link, {"ContentDocumentId": document_id, "LinkedEntityId": record["FirstPublishLocationId"],
                                    "ShareType": "V", "Visibility": "AllUsers"}, {}, caller)
            return
        for other in self.store.scan("ContentVersion"):
            if other.get("ContentDocumentId") == document_id and other["Id"] != record["Id"] and other.get("IsLatest"):
                self.system_update("ContentVersion", other["Id"], {"IsLatest": False})
        self.system_update("ContentDocument", document_id, {
            "LatestPublishedVersionId": record["Id"], "Title": record.get("Title"),
            "ContentSize": record.get("ContentSize"), "FileType": record.get("FileType")})

    def _derive_ContentDocumentLink(self, record: dict, old: dict | None, caller: Caller) -> None:  # noqa: N802
        if old is not None:
            return
        entity = self._any_record(record.get("LinkedEntityId"))
        if entity is None:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {record.get('LinkedEntityId')}",
                              ["LinkedEntityId"])
        record["LinkedEntityId"] = entity["Id"]
        for other in self.store.scan("ContentDocumentLink"):
            if (not other["IsDeleted"] and other.get("ContentDocumentId") == record.get("ContentDocumentId")
                    and other.get("LinkedEntityId") == entity["Id"]):
                raise RecordError("DUPLICATE_VALUE", "Document with ID: {} is already linked with the entity with ID: "
                                  "{}".format(record.get("ContentDocumentId"), entity["Id"]), [])

    def version_data(self, record_id: str) -> bytes:
        """The bytes of a ContentVersion (``GET sobjects/ContentVersion/{id}/VersionData``)."""
        record = self._live(self.object("ContentVersion"), record_id)
        return base64.b64decode(record.get("_VersionData__base64") or "")
