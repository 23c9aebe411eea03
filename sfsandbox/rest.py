"""The REST resources under /services/data/vXX.X/: routing and the Salesforce shapes.

``Rest.dispatch`` takes a parsed request and returns ``(status, body, headers)``; the
WSGI layer (app.py) and the composite resource both call it.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

from sfsandbox import ids
from sfsandbox.errors import ApiError, RecordError, not_found
from sfsandbox.org import Caller, Org, format_datetime, parse_datetime
from sfsandbox.schema import describe_global, describe_object
from sfsandbox.soql import SoqlError

MIN_VERSION, MAX_VERSION = 20, 66
VERSION_RE = re.compile(r"^v(\d{2})\.0$")
PAGE_SIZE = 2000
COLLECTION_LIMIT = 200
COMPOSITE_LIMIT = 25
COMPOSITE_QUERY_LIMIT = 5
CURSOR_TTL = 15 * 60
MAX_CURSORS = 200
ROLLED_BACK = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
               "message": "Record rolled back because not all records were valid and the request was using "
                          "AllOrNone header", "fields": []}
Response = tuple[int, Any, dict[str, str]]


@dataclass
class Call:
    method: str
    segments: list[str]  # raw (still percent-encoded) path segments after vXX.X/
    args: dict[str, str]
    body: Any
    caller: Caller
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.caller.api_version


def split_path(raw_path: str) -> list[str]:
    return [s for s in raw_path.split("/") if s != ""]


def parse_version(segment: str) -> str | None:
    m = VERSION_RE.match(segment)
    if m and MIN_VERSION <= int(m.group(1)) <= MAX_VERSION:
        return f"{m.group(1)}.0"
    return None


def versions_list() -> list[dict[str, str]]:
    return [{"label": f"v{v}.0", "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
            for v in range(31, MAX_VERSION + 1)]


class Rest:
    def __init__(self, org: Org, limits: Any):
        self.org = org
        self.limits = limits  # has .usage() -> (used, max)
        self._cursors: OrderedDict[str, tuple[float, list[dict]]] = OrderedDict()
        self._cursor_lock = threading.Lock()
        self._cursor_seq = 0

    # ------------------------------------------------------------- routing

    def dispatch(self, call: Call) -> Response:
        seg = call.segments
        m = call.method
        if not seg:
            return self._only(m, "GET") or (200, self._resources(call.version), {})
        head = seg[0]
        if head == "sobjects":
            return self._sobjects(call)
        if head in ("query", "queryAll"):
            self._only(m, "GET", raise_=True)
            if len(seg) == 1:
                return self._query(call, include_deleted=head == "queryAll")
            if len(seg) == 2:
                return self._query_more(call, unquote(seg[1]))
            raise not_found()
        if head == "limits" and len(seg) == 1:
            self._only(m, "GET", raise_=True)
            return 200, self._limits(), {}
        if head == "composite":
            if len(seg) == 1:
                self._only(m, "POST", raise_=True)
                return self._composite(call)
            if seg[1] == "sobjects":
                return self._collections(call)
        raise not_found()

    @staticmethod
    def _only(method: str, *allowed: str, raise_: bool = False) -> Response | None:
        if method in allowed:
            return None
        error = ApiError(405, "METHOD_NOT_ALLOWED",
                         f"HTTP Method '{method}' not allowed. Allowed are {','.join(('HEAD',) + allowed)}")
        if raise_:
            raise error
        return error.status, error.body(), {}

    def _resources(self, version: str) -> dict:
        base = f"/services/data/v{version}"
        return {name: f"{base}/{name}" for name in ("sobjects", "query", "queryAll", "limits", "composite")}

    # ------------------------------------------------------------- sobjects

    def _sobjects(self, call: Call) -> Response:
        seg, m, org = call.segments, call.method, self.org
        if len(seg) == 1:
            self._only(m, "GET", raise_=True)
            return 200, describe_global(org.schema, call.version), {}
        obj = org.object(unquote(seg[1]))
        if len(seg) == 2:
            if m == "GET":
                return 200, {"objectDescribe": describe_global(org.schema, call.version)["sobjects"][
                    list(org.schema.objects).index(obj.name)], "recentItems": []}, {}
            self._only(m, "GET", "POST", raise_=True)
            rid = self._record_call(lambda: org.create(obj, self._body(call), call.caller))
            return 201, {"id": rid, "success": True, "errors": []}, {}
        third = unquote(seg[2])
        if len(seg) == 3:
            if third == "describe":
                self._only(m, "GET", raise_=True)
                return 200, describe_object(org.schema, obj, call.version), {}
            if third in ("updated", "deleted"):
                self._only(m, "GET", raise_=True)
                return 200, self._replication(obj, third, call.args), {}
            if third.lower() == "id" and m == "POST":
                rid = self._record_call(lambda: org.create(obj, self._body(call), call.caller))
                return 201, {"id": rid, "success": True, "errors": []}, {}
            if ids.normalize(third) is None and obj.field(third) is not None:
                raise not_found()
            return self._by_id(call, obj, third)
        if len(seg) == 4:
            if obj.name == "ContentVersion" and unquote(seg[3]) == "VersionData" and m == "GET":
                return 200, self.org.version_data(third), {"Content-Type": "application/octet-stream"}
            return self._by_external_id(call, obj, third, unquote_plus(seg[3]))
        raise not_found()

    def _by_id(self, call: Call, obj: Any, record_id: str) -> Response:
        org = self.org
        if call.method == "GET":
            fields = [f for f in call.args.get("fields", "").split(",") if f.strip()] or None
            return 200, org.read(obj, record_id, [f.strip() for f in fields] if fields else None, call.version), {}
        if call.method == "PATCH":
            self._record_call(lambda: org.update(obj, record_id, self._body(call), call.caller))
            return 204, None, {}
        if call.method == "DELETE":
            self._record_call(lambda: org.delete(obj, record_id, call.caller))
            return 204, None, {}
        raise ApiError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{call.method}' not allowed. Allowed are "
                       "HEAD,GET,PATCH,DELETE")

    def _by_external_id(self, call: Call, obj: Any, field_name: str, value: str) -> Response:
        org = self.org
        if call.method == "PATCH" or (call.method == "POST" and field_name.lower() == "id"):
            update_only = call.args.get("updateOnly", "").lower() == "true"
            rid, created = self._record_call(lambda: org.upsert(obj, field_name, value, self._body(call),
                                                                call.caller, update_only=update_only))
            body = {"id": rid, "success": True, "errors": [], "created": created}
            if created:
                return 201, body, {"Location": f"/services/data/v{call.version}/sobjects/{obj.name}/{rid}"}
            if float(call.version) < 46:
                return 204, None, {}
            return 200, body, {}
        spec, matches = org.find_by_external_id(obj, field_name, value)
        if len(matches) > 1:
            return 300, [f"/services/data/v{call.version}/sobjects/{obj.name}/{rid}" for rid in matches], {}
        if not matches:
            raise not_found()
        if call.method == "GET":
            fields = [f.strip() for f in call.args.get("fields", "").split(",") if f.strip()] or None
            return 200, org.read(obj, matches[0], fields, call.version), {}
        if call.method == "DELETE":
            self._record_call(lambda: org.delete(obj, matches[0], call.caller))
            return 204, None, {}
        raise ApiError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{call.method}' not allowed. Allowed are "
                       "HEAD,GET,PATCH,DELETE")

    @staticmethod
    def _record_call(fn: Any) -> Any:
        try:
            return fn()
        except RecordError as exc:
            raise exc.as_api_error() from None

    @staticmethod
    def _body(call: Call) -> Any:
        if call.body is None:
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body is empty or not valid JSON")
        return call.body

    # ------------------------------------------------------------- query

    def _query(self, call: Call, *, include_deleted: bool) -> Response:
        soql = call.args.get("q")
        if not soql:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        try:
            result = self.org.query(soql, include_deleted=include_deleted, api_version=call.version)
        except SoqlError as exc:
            raise ApiError(400, exc.error_code, exc.message) from None
        if result.is_count:
            return 200, {"totalSize": result.total_size, "done": True, "records": []}, {}
        return 200, self._page(call, result.records, 0, self._page_size(call)), {}

    def _page_size(self, call: Call) -> int:
        options = call.headers.get("sforce-query-options", "")
        m = re.search(r"batchSize=(\d+)", options)
        if m:
            return max(200, min(PAGE_SIZE, int(m.group(1))))
        return PAGE_SIZE

    def _page(self, call: Call, records: list[dict], offset: int, size: int, locator: str | None = None) -> dict:
        end = offset + size
        page = {"totalSize": len(records), "done": end >= len(records), "records": records[offset:end]}
        if end < len(records):
            if locator is None:
                locator = self._store_cursor(records)
            page["nextRecordsUrl"] = f"/services/data/v{call.version}/query/{locator}-{end}"
        return page

    def _store_cursor(self, records: list[dict]) -> str:
        with self._cursor_lock:
            self._cursor_seq += 1
            locator = ids.make_id("01g", self._cursor_seq)
            now = time.monotonic()
            self._cursors[locator] = (now, records)
            while len(self._cursors) > MAX_CURSORS:
                self._cursors.popitem(last=False)
            for key in [k for k, (t, _) in self._cursors.items() if now - t > CURSOR_TTL]:
                del self._cursors[key]
        return locator

    def _query_more(self, call: Call, token: str) -> Response:
        locator, _, offset_text = token.partition("-")
        locator = ids.normalize(locator) or locator
        with self._cursor_lock:
            entry = self._cursors.get(locator)
            if entry is not None:
                self._cursors[locator] = (time.monotonic(), entry[1])
                self._cursors.move_to_end(locator)
        if entry is None or not offset_text.isdigit():
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        offset = int(offset_text)
        if offset > len(entry[1]):
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return 200, self._page(call, entry[1], offset, self._page_size(call), locator), {}

    # ------------------------------------------------------------- updated / deleted / limits

    def _replication(self, obj: Any, which: str, args: dict[str, str]) -> dict:
        start, end = (parse_datetime(args.get(k, "")) for k in ("start", "end"))
        if start is None or end is None:
            raise ApiError(400, "INVALID_REPLICATION_DATE" if args.get("start") and args.get("end")
                           else "MISSING_ARGUMENT", "start and end must be ISO 8601 date-times with an offset")
        start = start.replace(second=0, microsecond=0)
        end = end.replace(second=0, microsecond=0)
        now = self.org.clock()
        if start >= end:
            raise ApiError(400, "INVALID_REPLICATION_DATE", "startDate must chronologically precede endDate")
        window = 30 if which == "updated" else 15
        if start < now - timedelta(days=window):
            raise ApiError(400, "INVALID_REPLICATION_DATE",
                           f"startDate cannot be more than {window} days ago")
        latest = min(end, now.replace(second=0, microsecond=0))
        lo, hi = format_datetime(start), format_datetime(end)
        with self.org.store.lock:
            if which == "updated":
                found = [r["Id"] for r in self.org.store.scan(obj.name)
                         if lo <= r["SystemModstamp"] < hi]
                return {"ids": found, "latestDateCovered": format_datetime(latest)}
            deleted = [{"id": rid, "deletedDate": when} for name, rid, when in self.org.store.deleted_log
                       if name == obj.name and lo <= when < hi]
        earliest = now - timedelta(days=window)
        return {"deletedRecords": deleted, "earliestDateAvailable": format_datetime(earliest),
                "latestDateCovered": format_datetime(latest)}

    def _limits(self) -> dict:
        used, maximum = self.limits.usage()
        remaining = max(maximum - used, 0)
        return {
            "DailyApiRequests": {"Max": maximum, "Remaining": remaining},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024},
            "FileStorageMB": {"Max": 1024, "Remaining": 1024},
            "SingleEmail": {"Max": 5000, "Remaining": 5000},
        }

    # ------------------------------------------------------------- sObject Collections

    def _collections(self, call: Call) -> Response:
        seg, m = call.segments, call.method
        if len(seg) == 2:
            if m == "POST":
                return 200, self._collection_write(call, "create"), {}
            if m == "PATCH":
                return 200, self._collection_write(call, "update"), {}
            if m == "DELETE":
                return 200, self._collection_delete(call), {}
            self._only(m, "POST", "PATCH", "DELETE", raise_=True)
        if len(seg) == 3 and m in ("GET", "POST"):
            return 200, self._collection_retrieve(call, unquote(seg[2])), {}
        if len(seg) == 4 and m == "PATCH":
            return 200, self._collection_upsert(call, unquote(seg[2]), unquote(seg[3])), {}
        raise not_found()

    def _collection_body(self, call: Call) -> tuple[list, bool]:
        body = self._body(call)
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be an object with a records list")
        records = body["records"]
        if len(records) > COLLECTION_LIMIT:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records "
                           "into this call")
        all_or_none = body.get("allOrNone", False)
        if not isinstance(all_or_none, bool):
            raise ApiError(400, "JSON_PARSER_ERROR", "allOrNone must be true or false")
        return records, all_or_none

    def _record_type(self, record: Any) -> Any:
        if not isinstance(record, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Each record must be a JSON object")
        kind = (record.get("attributes") or {}).get("type") if isinstance(record.get("attributes"), dict) else None
        if not kind:
            raise ApiError(400, "INVALID_TYPE", "Each record must name its type in attributes.type")
        obj = self.org.schema.get(kind)
        if obj is None:
            raise ApiError(400, "INVALID_TYPE", f"sObject type '{kind}' is not supported.")
        return obj

    def _run_batch(self, ops: list[Any], all_or_none: bool) -> list[dict]:
        """Run each op (a callable returning a success result, or raising RecordError);
        one transaction; with allOrNone any failure rolls every record back."""
        results: list[dict] = []
        store = self.org.store
        failed = False
        try:
            with store.transaction():
                start = store.savepoint()
                for op in ops:
                    try:
                        with store.transaction():
                            results.append(op())
                    except RecordError as exc:
                        failed = True
                        results.append({"success": False, "errors": [exc.as_result()], **exc_id(op)})
                if failed and all_or_none:
                    store.rollback_to(start)
        except ApiError:
            raise
        if failed and all_or_none:
            results = [r if not r["success"] else {"id": None, "success": False, "errors": [dict(ROLLED_BACK)]}
                       for r in results]
            for r in results:
                if r.get("id") is None:
                    r.pop("id", None)
        return results

    def _collection_write(self, call: Call, mode: str) -> list[dict]:
        records, all_or_none = self._collection_body(call)
        org = self.org
        ops = []
        for record in records:
            obj = self._record_type(record)

            def op(record: dict = record, obj: Any = obj) -> dict:
                if mode == "create":
                    if any(k.lower() == "id" for k in record):
                        raise RecordError("INVALID_FIELD", "Record ID: cannot specify Id in an insert call", ["Id"])
                    rid = org.create(obj, record, call.caller)
                    return {"id": rid, "success": True, "errors": []}
                rid = next((v for k, v in record.items() if k.lower() == "id"), None)
                if not isinstance(rid, str) or ids.normalize(rid) is None:
                    raise RecordError("MALFORMED_ID", f"Record ID: id value of incorrect type: {rid}", ["Id"])
                try:
                    org.update(obj, rid, record, call.caller)
                except ApiError as exc:
                    if exc.status == 404:
                        raise RecordError("ENTITY_IS_DELETED" if exc.code == "ENTITY_IS_DELETED"
                                          else "INVALID_CROSS_REFERENCE_KEY",
                                          "entity is deleted" if exc.code == "ENTITY_IS_DELETED"
                                          else "invalid cross reference id", []) from None
                    raise
                return {"id": ids.normalize(rid), "success": True, "errors": []}

            op.record_id = None if mode == "create" else next(  # type: ignore[attr-defined]
                (v for k, v in record.items() if k.lower() == "id"), None)
            ops.append(op)
        return self._run_batch(ops, all_or_none)

    def _collection_upsert(self, call: Call, obj_name: str, field_name: str) -> list[dict]:
        org = self.org
        obj = org.object(obj_name)
        records, all_or_none = self._collection_body(call)
        spec, _ = org.find_by_external_id(obj, field_name, "")
        if spec.name == "Id":
            raise ApiError(400, "INVALID_FIELD", "sObject Collections upsert needs an external ID field, not Id")
        seen: dict[Any, int] = {}
        for record in records:
            if self._record_type(record).name != obj.name:
                raise ApiError(400, "INVALID_TYPE", f"All records must be of type {obj.name}")
            value = next((v for k, v in record.items() if k.lower() == spec.name.lower()), None)
            key = value.lower() if isinstance(value, str) and not spec.case_sensitive else value
            seen[key] = seen.get(key, 0) + 1
        ops = []
        for record in records:
            value = next((v for k, v in record.items() if k.lower() == spec.name.lower()), None)
            key = value.lower() if isinstance(value, str) and not spec.case_sensitive else value

            def op(record: dict = record, value: Any = value, key: Any = key) -> dict:
                if value is None or value == "":
                    raise RecordError("MISSING_ARGUMENT", f"{spec.name} not specified", [spec.name])
                if seen[key] > 1:
                    raise RecordError("DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {value}",
                                      [spec.name])
                values, refs = org.prepare(obj, record, creating=True, upsert_field=spec)
                try:
                    rid, created = org.upsert_prepared(obj, spec, value, values, refs, call.caller)
                except ApiError as exc:
                    if exc.status == 300:
                        raise RecordError("DUPLICATE_EXTERNAL_ID", f"Multiple records match {spec.name} = "
                                          f"{value}", [spec.name]) from None
                    raise
                return {"id": rid, "success": True, "errors": [], "created": created}

            ops.append(op)
        return self._run_batch(ops, all_or_none)

    def _collection_delete(self, call: Call) -> list[dict]:
        raw_ids = [i for i in call.args.get("ids", "").split(",") if i]
        if not raw_ids:
            raise ApiError(400, "MISSING_ARGUMENT", "ids is required")
        if len(raw_ids) > COLLECTION_LIMIT:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records "
                           "into this call")
        all_or_none = call.args.get("allOrNone", "false").lower() == "true"
        org = self.org
        ops = []
        for raw in raw_ids:
            def op(raw: str = raw) -> dict:
                rid = ids.normalize(raw)
                obj = org.schema.object_for_id(rid) if rid else None
                if rid is None or obj is None:
                    raise RecordError("MALFORMED_ID", f"malformed id {raw}", [])
                record = org.store.get(obj.name, rid)
                if record is None:
                    raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
                if record["IsDeleted"]:
                    raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [])
                org.delete(obj, rid, call.caller)
                return {"id": rid, "success": True, "errors": []}

            op.record_id = raw  # type: ignore[attr-defined]
            ops.append(op)
        return self._run_batch(ops, all_or_none)

    def _collection_retrieve(self, call: Call, obj_name: str) -> list[dict | None]:
        obj = self.org.object(obj_name)
        if call.method == "POST":
            body = self._body(call)
            wanted, fields = body.get("ids") or [], body.get("fields") or []
        else:
            wanted = [i for i in call.args.get("ids", "").split(",") if i]
            fields = [f for f in call.args.get("fields", "").split(",") if f]
        if not fields:
            raise ApiError(400, "MISSING_ARGUMENT", "fields is required")
        out: list[dict | None] = []
        for raw in wanted:
            rid = ids.normalize(raw)
            record = self.org.store.get(obj.name, rid) if rid else None
            out.append(self.org.shape(obj, record, fields, call.version)
                       if record and not record["IsDeleted"] else None)
        return out

    # ------------------------------------------------------------- composite

    def _composite(self, call: Call) -> Response:
        body = self._body(call)
        subrequests = body.get("compositeRequest") if isinstance(body, dict) else None
        if not isinstance(subrequests, list) or not subrequests:
            raise ApiError(400, "JSON_PARSER_ERROR", "compositeRequest must be a non-empty list")
        if len(subrequests) > COMPOSITE_LIMIT:
            raise ApiError(400, "LIMIT_EXCEEDED", f"Composite Request limit exceeded: at most {COMPOSITE_LIMIT} "
                           "subrequests")
        # Salesforce allows at most 5 subrequests that are queries or sObject Collections.
        heavy = sum(1 for s in subrequests if isinstance(s, dict) and
                    re.search(r"/(query(All)?|composite/sobjects)(/|\?|$)", str(s.get("url", ""))))
        if heavy > COMPOSITE_QUERY_LIMIT:
            raise ApiError(400, "LIMIT_EXCEEDED", f"at most {COMPOSITE_QUERY_LIMIT} subrequests may be queries "
                           "or sObject Collections")
        all_or_none = bool(body.get("allOrNone", False))
        refs: dict[str, Any] = {}
        responses: list[dict] = []
        store = self.org.store
        failed_at: int | None = None
        with store.transaction():
            start = store.savepoint()
            for index, sub in enumerate(subrequests):
                ref_id = str(sub.get("referenceId", "")) if isinstance(sub, dict) else ""
                if failed_at is not None and all_or_none:
                    responses.append(_halted(ref_id))
                    continue
                try:
                    status, result, headers = self._subrequest(call, sub, refs)
                except ApiError as exc:
                    status, result, headers = exc.status, exc.body(), {}
                except RecordError as exc:
                    status, result, headers = exc.status, exc.as_api_error().body(), {}
                responses.append({"body": result, "httpHeaders": headers, "httpStatusCode": status,
                                  "referenceId": ref_id})
                if status < 400:
                    refs[ref_id] = result
                elif failed_at is None:
                    failed_at = index
            if failed_at is not None and all_or_none:
                store.rollback_to(start)
                responses = [r if i == failed_at else _halted(r["referenceId"]) for i, r in enumerate(responses)]
        return 200, {"compositeResponse": responses}, {}

    def _subrequest(self, call: Call, sub: Any, refs: dict[str, Any]) -> Response:
        if not isinstance(sub, dict) or not sub.get("method") or not sub.get("url") or not sub.get("referenceId"):
            raise ApiError(400, "JSON_PARSER_ERROR", "each subrequest needs method, url and referenceId")
        url = _substitute(str(sub["url"]), refs, in_url=True)
        body = _substitute(sub.get("body"), refs) if sub.get("body") is not None else None
        parts = urlsplit(url)
        segments = split_path(parts.path)
        if segments[:2] != ["services", "data"] or len(segments) < 3:
            raise not_found()
        version = parse_version(segments[2])
        if version is None:
            raise not_found()
        if segments[3:4] == ["composite"] and len(segments) == 4:
            raise ApiError(400, "INVALID_INPUT", "composite requests cannot be nested")
        caller = Caller(call.caller.user_id, call.caller.client_id, version)
        args = dict(parse_qsl(parts.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in (sub.get("httpHeaders") or {}).items()}
        status, result, out_headers = self.dispatch(Call(str(sub["method"]).upper(), segments[3:], args, body,
                                                         caller, headers))
        if status == 201 and isinstance(result, dict) and result.get("id"):
            obj = self.org.schema.object_for_id(result["id"])
            if obj is not None:
                out_headers = {"Location": f"/services/data/v{version}/sobjects/{obj.name}/{result['id']}"}
        return status, result, out_headers


def exc_id(op: Any) -> dict:
    rid = getattr(op, "record_id", None)
    return {"id": ids.normalize(rid) or rid} if rid else {}


def _halted(ref_id: str) -> dict:
    return {"body": [{"errorCode": "PROCESSING_HALTED",
                      "message": "The transaction was rolled back since another operation in the same transaction "
                                 "failed."}],
            "httpHeaders": {}, "httpStatusCode": 400, "referenceId": ref_id}


_REF = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")


def _lookup(refs: dict[str, Any], name: str, path: str) -> Any:
    if name not in refs:
        raise ApiError(400, "PROCESSING_HALTED", f"Invalid reference specified. No value for {name}{path} found in "
                       f"{name}. Provided referenceId ({name}) must reference a previous successful subrequest.")
    value = refs[name]
    for part in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
        key, index = part
        try:
            if key:
                match = next((k for k in value if k.lower() == key.lower()), key) if isinstance(value, dict) else key
                value = value[match]
            else:
                value = value[int(index)]
        except (KeyError, IndexError, TypeError):
            raise ApiError(400, "PROCESSING_HALTED", f"Invalid reference specified. No value for {name}{path} found "
                           f"in {name}.") from None
    return value


def _substitute(value: Any, refs: dict[str, Any], in_url: bool = False) -> Any:
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole and not in_url:
            return _lookup(refs, whole.group(1), whole.group(2))
        return _REF.sub(lambda m: str(_lookup(refs, m.group(1), m.group(2))), value)
    if isinstance(value, dict):
        return {k: _substitute(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, refs) for v in value]
    return value
