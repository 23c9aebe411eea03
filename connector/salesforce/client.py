"""``SalesforceClient``: every call billsync makes to a Salesforce org.

Each public method goes through ``_call``, which in order:

1. refuses without calling while the sync is paused (REQUEST_LIMIT_EXCEEDED, or our
   own budget stop at SF_API_BUDGET_SHARE of the daily allocation), so a paused
   sync never hot-loops;
2. runs the call under the one retry policy (``retry.retry_policy``), with every
   failure classified once (``errors.classify``);
3. on 401 INVALID_SESSION_ID re-authenticates once and repeats the call once; a
   second 401 (or any 401 with a pre-issued session) raises ``SalesforceAuthError``.

simple-salesforce does the REST work in "direct" mode (a token we obtained), so its
own recursive re-login never runs. Writes are sent with ``restful(..., data=...)``
and a body from ``payload.encode_payload``, so Decimal money stays exact; responses
are parsed with ``parse_float=Decimal``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import requests
import tenacity
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError as SimpleSalesforceError
from simple_salesforce.format import format_external_id

from connector.salesforce.auth import AuthConfig, Authenticator, Token
from connector.salesforce.errors import (
    RecordResult,
    SalesforceAuthError,
    SalesforceLimitError,
    SalesforceNotConfiguredError,
    SalesforceSessionExpiredError,
    classify,
)
from connector.salesforce.payload import encode_payload
from connector.salesforce.retry import retry_policy
from connector.salesforce.transport import ApiUsage, SalesforceSession

if TYPE_CHECKING:
    from connector.settings import Settings

log = logging.getLogger("billsync.salesforce")

T = TypeVar("T")

#: Salesforce's limits per request.
COLLECTION_MAX_RECORDS = 200
COMPOSITE_MAX_SUBREQUESTS = 25

_API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}")
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_RESERVED_NAMES = frozenset({"bulk", "bulk2"})  # simple-salesforce attributes, not sObjects


@dataclass(frozen=True)
class UpsertResult:
    """Result of a single-record upsert by external id."""

    id: str | None
    created: bool


@dataclass(frozen=True)
class SubrequestResult:
    """One subrequest's answer inside a Composite call."""

    reference_id: str
    status: int
    body: Any

    @property
    def success(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class ApiStatus:
    """What ``billsync sync status`` shows about the org's API allocation."""

    used: int | None
    max: int | None
    share: Decimal
    paused_until: datetime | None
    pause_reason: str | None
    calls_made: int

    @property
    def used_share(self) -> Decimal | None:
        if self.used is None or not self.max:
            return None
        return Decimal(self.used) / Decimal(self.max)

    def describe(self) -> str:
        if self.used is None or self.max is None:
            usage = "API usage not known yet (no call made)"
        else:
            usage = (f"API usage {self.used:,} of {self.max:,} daily calls "
                     f"({self.used_share:.0%}); billsync stops at {self.share:.0%}")
        if self.paused_until:
            usage += f"; paused ({self.pause_reason}) until {self.paused_until.isoformat(timespec='seconds')}"
        return usage


class SalesforceClient:
    """A connected (lazily authenticated) Salesforce org. Not shared between threads."""

    def __init__(self, authenticator: Authenticator, session: SalesforceSession, *,
                 api_version: str = "59.0", policy: tenacity.Retrying | None = None,
                 budget_share: Decimal = Decimal("0.5"), limit_pause: timedelta = timedelta(seconds=900),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.authenticator = authenticator
        self.session = session
        self.api_version = api_version
        self.policy = policy or retry_policy()
        self.budget_share = Decimal(budget_share)
        self.limit_pause = limit_pause
        self.clock = clock
        self.paused_until: datetime | None = None
        self.pause_reason: str | None = None
        self.reauthentications = 0
        self._sf: Salesforce | None = None
        self._token: Token | None = None
        self._stale_usage: ApiUsage | None = None

    # ------------------------------------------------------------ status

    @property
    def calls_made(self) -> int:
        """HTTP requests sent so far (token requests included)."""
        return self.session.calls_made

    @property
    def api_usage(self) -> ApiUsage | None:
        """The org's daily usage from the latest Sforce-Limit-Info header."""
        return self.session.api_usage

    def status(self) -> ApiStatus:
        usage = self.api_usage
        return ApiStatus(used=usage.used if usage else None, max=usage.max if usage else None,
                         share=self.budget_share, paused_until=self.paused_until,
                         pause_reason=self.pause_reason, calls_made=self.calls_made)

    def refresh_status(self) -> ApiStatus:
        """Status with fresh usage (one ``limits/`` call) unless paused; for ``billsync sync status``."""
        try:
            self.limits()
        except SalesforceLimitError:
            pass  # paused or at the budget: the status says so
        return self.status()

    @property
    def instance_url(self) -> str | None:
        return self._token.instance_url if self._token else None

    def organization_id(self) -> str | None:
        """The org billsync is logged in to (logging in first when needed): from the token's identity
        URL, or SF_ORG_ID for a pre-issued session; ``None`` when neither says."""
        if self._token is None:
            self._connected()
        return self._token.org_id if self._token else None

    @property
    def user_id(self) -> str | None:
        """The integration user billsync logged in as (known after the first call)."""
        return self._token.user_id if self._token else None

    # ------------------------------------------------------------ reads

    def query_page(self, soql: str, *, include_deleted: bool = False) -> dict[str, Any]:
        """One page of a query: ``{"totalSize", "done", "records", "nextRecordsUrl"?}``."""
        path = "queryAll" if include_deleted else "query"
        return self._call("GET", path, lambda sf: sf.query(soql, include_deleted=include_deleted))

    def query_more(self, next_records_url: str) -> dict[str, Any]:
        """The page at a ``nextRecordsUrl`` (a path on the instance)."""
        if not next_records_url.startswith("/services/data/"):
            raise ValueError(f"not a nextRecordsUrl: {next_records_url!r}")
        return self._call("GET", next_records_url,
                          lambda sf: sf.query_more(next_records_url, identifier_is_url=True))

    def query_all(self, soql: str, *, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        """Every record of a query, page by page (each page one call, each call checked and retried)."""
        page = self.query_page(soql, include_deleted=include_deleted)
        while True:
            yield from page.get("records", [])
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url:
                return
            page = self.query_more(next_url)

    def describe_global(self) -> dict[str, Any]:
        return self._call("GET", "sobjects", lambda sf: sf.describe())

    def describe(self, sobject: str) -> dict[str, Any]:
        name = _api_name(sobject)
        return self._call("GET", f"sobjects/{name}/describe", lambda sf: getattr(sf, name).describe())

    def get(self, sobject: str, record_id: str) -> dict[str, Any]:
        """The record; ``SalesforceRecordError`` (NOT_FOUND, ENTITY_IS_DELETED) when it isn't there."""
        name, rid = _api_name(sobject), _record_id(record_id)
        return self._call("GET", f"sobjects/{name}/{rid}", lambda sf: getattr(sf, name).get(rid), record=True)

    def updated(self, sobject: str, start: datetime, end: datetime) -> dict[str, Any]:
        """``{"ids": [...], "latestDateCovered": ...}`` for records changed in [start, end) (last 30 days)."""
        name = _api_name(sobject)
        start_utc, end_utc = _window(start, end)
        return self._call("GET", f"sobjects/{name}/updated",
                          lambda sf: getattr(sf, name).updated(start_utc, end_utc))

    def deleted(self, sobject: str, start: datetime, end: datetime) -> dict[str, Any]:
        """``{"deletedRecords": [...], "earliestDateAvailable", "latestDateCovered"}`` (last 15 days)."""
        name = _api_name(sobject)
        start_utc, end_utc = _window(start, end)
        return self._call("GET", f"sobjects/{name}/deleted",
                          lambda sf: getattr(sf, name).deleted(start_utc, end_utc))

    def limits(self) -> dict[str, Any]:
        """``GET limits/`` (costs one call; also refreshes ``api_usage`` from its header)."""
        return self._call("GET", "limits", lambda sf: sf.limits())

    # ------------------------------------------------------------ writes

    def upsert(self, sobject: str, ext_field: str, ext_value: str, data: Mapping[str, Any]) -> UpsertResult:
        """Create or update one record by external id (idempotent; safe to retry)."""
        name, field_name = _api_name(sobject), _api_name(ext_field)
        if ext_field in data:
            data = {k: v for k, v in data.items() if k != ext_field}
        path = f"sobjects/{name}/{format_external_id(field_name, str(ext_value))}"
        body = self._call("PATCH", path,
                          lambda sf: sf.restful(path, method="PATCH", data=encode_payload(dict(data))),
                          record=True)
        if isinstance(body, dict):
            return UpsertResult(id=body.get("id"), created=bool(body.get("created")))
        return UpsertResult(id=None, created=False)  # API < 46 answers 204 on update

    def update(self, sobject: str, record_id: str, data: Mapping[str, Any]) -> None:
        name, rid = _api_name(sobject), _record_id(record_id)
        path = f"sobjects/{name}/{rid}"
        self._call("PATCH", path, lambda sf: sf.restful(path, method="PATCH", data=encode_payload(dict(data))),
                   record=True)

    def collections_upsert(self, sobject: str, ext_field: str, records: Iterable[Mapping[str, Any]], *,
                           all_or_none: bool = False) -> list[RecordResult]:
        """Upsert up to 200 records of one type by external id; one result per record, in order."""
        name, field_name = _api_name(sobject), _api_name(ext_field)
        batch = _collection(records)
        body = []
        for index, record in enumerate(batch):
            if record.get(field_name) in (None, ""):
                raise ValueError(f"record {index} has no {field_name}: every record needs its external id")
            body.append({**record, "attributes": {**record.get("attributes", {}), "type": name}})
        path = f"composite/sobjects/{name}/{field_name}"
        payload = encode_payload({"allOrNone": all_or_none, "records": body})
        results = self._call("PATCH", path, lambda sf: sf.restful(path, method="PATCH", data=payload))
        return [RecordResult.from_json(item) for item in results or []]

    def collections_update(self, records: Iterable[Mapping[str, Any]], *,
                           all_or_none: bool = False) -> list[RecordResult]:
        """Update up to 200 records by Id; each needs ``attributes.type`` and ``Id`` (or ``id``)."""
        batch = _collection(records)
        for index, record in enumerate(batch):
            kind = (record.get("attributes") or {}).get("type")
            if not kind or not (record.get("Id") or record.get("id")):
                raise ValueError(f"record {index} needs attributes.type and Id")
            _api_name(kind)
            _record_id(record.get("Id") or record.get("id"))
        path = "composite/sobjects"
        payload = encode_payload({"allOrNone": all_or_none, "records": batch})
        results = self._call("PATCH", path, lambda sf: sf.restful(path, method="PATCH", data=payload))
        return [RecordResult.from_json(item) for item in results or []]

    def composite(self, subrequests: list[Mapping[str, Any]], *, all_or_none: bool = False) -> list[SubrequestResult]:
        """POST /composite with up to 25 subrequests (counts as one API call).

        The whole call is retried on transient failures, so subrequests should be
        idempotent (upserts by external id, PATCH by Id), as billsync's pushes are.
        """
        if not subrequests:
            raise ValueError("composite needs at least one subrequest")
        if len(subrequests) > COMPOSITE_MAX_SUBREQUESTS:
            raise ValueError(f"composite takes at most {COMPOSITE_MAX_SUBREQUESTS} subrequests, "
                             f"got {len(subrequests)}")
        for index, sub in enumerate(subrequests):
            missing = [k for k in ("method", "url", "referenceId") if not sub.get(k)]
            if missing:
                raise ValueError(f"subrequest {index} has no {', '.join(missing)}")
        payload = encode_payload({"allOrNone": all_or_none, "compositeRequest": list(subrequests)})
        body = self._call("POST", "composite", lambda sf: sf.restful("composite", method="POST", data=payload))
        return [SubrequestResult(reference_id=item.get("referenceId", ""), status=int(item.get("httpStatusCode", 0)),
                                 body=item.get("body"))
                for item in (body or {}).get("compositeResponse", [])]

    # ------------------------------------------------------------ machinery

    def _call(self, method: str, path: str, operation: Callable[[Salesforce], T], *, record: bool = False) -> T:
        reauthenticated = False
        while True:
            try:
                return self.policy.copy()(self._attempt, method, path, operation, record)
            except SalesforceSessionExpiredError as exc:
                if not self.authenticator.can_reauthenticate:
                    raise SalesforceAuthError(
                        "Salesforce rejected the pre-issued session (SF_ACCESS_TOKEN expired or revoked); "
                        "issue a new token or use SF_AUTH=client_credentials or jwt",
                        code=exc.code, status=exc.status, method=method, path=path) from exc
                if reauthenticated:
                    raise SalesforceAuthError(
                        "Salesforce rejected the session again right after re-authenticating; giving up "
                        "(check the connected app's policies and the user's API permission)",
                        code=exc.code, status=exc.status, method=method, path=path) from exc
                reauthenticated = True
                self.reauthentications += 1
                log.warning("salesforce session expired on %s %s; re-authenticating once", method, path,
                            extra={"fields": {"method": method, "path": path}})
                self._sf = None

    def _attempt(self, method: str, path: str, operation: Callable[[Salesforce], T], record: bool) -> T:
        self._check_pause()
        sf = self._connected()
        try:
            return operation(sf)
        except (SimpleSalesforceError, requests.RequestException) as exc:
            error = classify(exc, record=record, method=method, path=path)
            if isinstance(error, SalesforceLimitError):
                self._pause(error, "REQUEST_LIMIT_EXCEEDED")
            raise error from exc

    def _connected(self) -> Salesforce:
        if self._sf is None:
            token = self.authenticator.authenticate()
            self._token = token
            self._sf = Salesforce(instance_url=token.instance_url, session_id=token.access_token,
                                  session=self.session, version=self.api_version, parse_float=Decimal)
        return self._sf

    def _check_pause(self) -> None:
        """Refuse (without calling) while paused, and stop voluntarily at our share of the allocation."""
        now = self.clock()
        if self.paused_until is not None:
            if now < self.paused_until:
                raise SalesforceLimitError(
                    f"Salesforce calls are paused ({self.pause_reason}) until "
                    f"{self.paused_until.isoformat(timespec='seconds')}",
                    code=self.pause_reason or "PAUSED", resume_after=self.paused_until)
            log.info("salesforce pause (%s) is over; resuming", self.pause_reason)
            self.paused_until = self.pause_reason = None
            # The usage we knew is from before the pause: let the next call refresh it.
            self._stale_usage = self.api_usage
        usage = self.api_usage
        if usage is None or usage is self._stale_usage or not usage.max:
            return
        if Decimal(usage.used) / Decimal(usage.max) >= self.budget_share:
            error = SalesforceLimitError(
                f"billsync has used {usage.used:,} of the org's {usage.max:,} daily API calls, reaching its "
                f"share of {self.budget_share:.0%} (SF_API_BUDGET_SHARE); stopping so other integrations "
                "keep the rest", code="API_BUDGET_REACHED")
            self._pause(error, "API_BUDGET_REACHED")
            raise error

    def _pause(self, error: SalesforceLimitError, reason: str) -> None:
        self.paused_until = self.clock() + self.limit_pause
        self.pause_reason = reason
        error.resume_after = self.paused_until
        log.warning("salesforce calls paused until %s: %s", self.paused_until.isoformat(timespec="seconds"),
                    error.message, extra={"fields": {"reason": reason, "resume_after": self.paused_until.isoformat()}})


# ---------------------------------------------------------------- factory


def build_client(settings: Settings, *, policy: tenacity.Retrying | None = None,
                 clock: Callable[[], datetime] | None = None) -> SalesforceClient:
    """The client for the org the settings describe; ``SalesforceNotConfiguredError`` when SF_AUTH=none."""
    if settings.sf_auth == "none":
        raise SalesforceNotConfiguredError(
            "Salesforce is not configured: set SF_AUTH to client_credentials, jwt, password or session "
            "and its SF_* variables (README, 'Salesforce connection')", code="NOT_CONFIGURED")
    session = SalesforceSession(timeout_seconds=settings.sf_timeout_seconds, ca_bundle=settings.sf_ca_bundle,
                                client_name=settings.sf_client_id)
    config = AuthConfig(
        mode=settings.sf_auth, login_url=settings.sf_login_url, client_id=settings.sf_client_id,
        client_secret=settings.sf_client_secret, username=settings.sf_username, password=settings.sf_password,
        security_token=settings.sf_security_token, private_key_file=settings.sf_private_key_file,
        jwt_audience=settings.sf_jwt_audience, instance_url=settings.sf_instance_url,
        access_token=settings.sf_access_token, org_id=settings.sf_org_id)
    clock = clock or (lambda: datetime.now(UTC))
    return SalesforceClient(
        Authenticator(config, session, clock=clock), session, api_version=settings.sf_api_version,
        policy=policy or retry_policy(settings.sf_retry_attempts, settings.sf_retry_max_seconds),
        budget_share=settings.sf_api_budget_share, limit_pause=timedelta(seconds=settings.sf_limit_pause_seconds),
        clock=clock)


# ---------------------------------------------------------------- argument checks


def _api_name(name: str) -> str:
    if not isinstance(name, str) or not _API_NAME.fullmatch(name) or name in _RESERVED_NAMES:
        raise ValueError(f"not a Salesforce API name: {name!r}")
    return name


def _record_id(record_id: Any) -> str:
    if not isinstance(record_id, str) or not _RECORD_ID.fullmatch(record_id):
        raise ValueError(f"not a Salesforce record id: {record_id!r}")
    return record_id


def _window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    for label, value in (("start", start), ("end", end)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{label} must be timezone-aware (a naive datetime breaks getUpdated/getDeleted)")
    if not start < end:
        raise ValueError("start must be before end")
    return start.astimezone(UTC), end.astimezone(UTC)


def _collection(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    batch = [dict(r) for r in records]
    if not batch:
        raise ValueError("no records to send")
    if len(batch) > COLLECTION_MAX_RECORDS:
        raise ValueError(f"sObject Collections take at most {COLLECTION_MAX_RECORDS} records per call, "
                         f"got {len(batch)}: split the batch")
    return batch
