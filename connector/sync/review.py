"""Reviews: what billsync refuses, or will not undo on its own, shown on the record and settled by a person.

A review is a ``sync_review_flags`` row (``connector.sync.tables``) of one kind:

- ``changed``: a won deal edited in Salesforce after billsync applied it (10 → 15 seats);
- ``reverted``: a won deal that no longer matches the mapping's filter (moved to Closed Lost);
- ``deleted``: a won deal (or an Account) deleted after billsync applied it;
- ``refused``: an Opportunity or Account billsync cannot apply (a ``Subscription_Reference__c``
  that names no subscription, a country it does not know...). It lasts as long as the
  record's pull error: the pull resolves it (``applied``) once the record applies. A record
  that only waits for another one the pull could not fetch ahead (a product's price) is a
  review from its second failure on, so notifications arriving out of order flag nothing.

Each carries a ``summary`` a rep can read and a **target**: the Salesforce record that shows
it (the deal itself; the Account of a deleted deal; none for a deleted Account). What a
record shows is a ``sync_review_marks`` row, recomputed whenever a review on it opens or
closes (``refresh_mark``): ``Billing_Review_Flag__c`` checked and ``Billing_Review_Reason__c``
holding the open reviews' summaries, or both cleared. The push delivers the marks
(``connector.sync.review_marks``).

``open_reviews`` and ``resolve_review`` are the use cases behind ``billsync review list``
and ``billsync review resolve`` (and the API): keep billing as it is, cancel the
subscription from a date, or re-apply the deal as it stands in Salesforce.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, select

from connector.queue import utc_now
from connector.sync.tables import REVIEW_KINDS, ReviewFlag, ReviewMark, SyncedRecord, SyncRecordError

if TYPE_CHECKING:
    from connector.wiring import Services

#: Objects whose records show reviews (they carry the two fields).
TARGET_OBJECTS = ("Opportunity", "Account")
#: ``Billing_Review_Reason__c`` is a Text(255).
REASON_LENGTH = 255
ACTIONS = ("keep", "cancel", "reapply")
_SALESFORCE_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


class ReviewError(Exception):
    """A review that cannot be settled as asked; one line per problem."""

    def __init__(self, lines: list[str] | str):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


def shorten(text: str, length: int = REASON_LENGTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[:length - 1].rstrip() + "…"


# ------------------------------------------------------------------ what a rep reads


def _line_label(line: Mapping[str, Any]) -> str:
    return str(line.get("product_code") or line.get("salesforce_line_id") or "a line")


_DEAL_FIELDS = {"starts_on": "start date", "term_months": "term", "auto_renew": "auto-renew",
                "anchor_day": "billing day", "renewal_uplift": "renewal uplift",
                "minimum_commitment": "minimum commitment", "currency": "currency",
                "salesforce_account_id": "account", "cancellation_mode": "cancellation mode",
                "subscription_reference": "subscription reference"}


def describe_deal_change(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> str:
    """What changed between two commands of one deal, in a rep's words (``LIC quantity 10 → 15``)."""
    old = (before or {}).get("data") or {}
    new = after.get("data") or {}
    changes: list[str] = []

    def key(line: Mapping[str, Any]) -> str:
        return str(line.get("salesforce_line_id") or line.get("product_code"))

    old_lines = {key(line): line for line in old.get("items") or []}
    new_lines = {key(line): line for line in new.get("items") or []}
    for name, line in new_lines.items():
        was = old_lines.get(name)
        if was is None:
            changes.append(f"{_line_label(line)} added")
            continue
        for field, label in (("quantity", "quantity"), ("unit_price", "price"),
                             ("discount_percent", "discount %"), ("discount_amount", "discount")):
            if str(was.get(field)) != str(line.get(field)):
                changes.append(f"{_line_label(line)} {label} {_plain(was.get(field))} → {_plain(line.get(field))}")
    changes.extend(f"{_line_label(line)} removed" for name, line in old_lines.items() if name not in new_lines)
    for field, label in _DEAL_FIELDS.items():
        if str(old.get(field)) != str(new.get(field)) and (field in old or field in new):
            changes.append(f"{label} {_plain(old.get(field))} → {_plain(new.get(field))}")
    if not changes:
        return "edited"
    shown = changes[:3]
    return ", ".join(shown) + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")


def _plain(value: Any) -> str:
    if value is None or value == "":
        return "empty"
    text = str(value)
    if re.fullmatch(r"-?\d+\.\d*?0+", text):  # 15.00 → 15, 12.50 → 12.5
        text = text.rstrip("0").rstrip(".")
    return text


def changed_summary(before: Mapping[str, Any] | None, after: Mapping[str, Any], engine_id: str) -> str:
    return (f"Edited after Closed Won ({describe_deal_change(before, after)}). billsync keeps billing "
            f"{engine_id} as won: record the change as an Amendment deal, or ask finance to re-apply it.")


def reverted_summary(stage: str | None, engine_id: str | None) -> str:
    now_is = f"Moved to {stage}" if stage else "No longer won"
    return (f"{now_is} after billing started ({engine_id}). billsync keeps billing until finance decides "
            "(keep billing, or cancel from a date).")


def deleted_deal_summary(record_id: str, engine_id: str | None) -> str:
    return (f"Deal {record_id} was deleted after billing started ({engine_id}). billsync keeps billing until "
            "finance decides (keep billing, or cancel from a date).")


def refused_summary(object_name: str, reason: str) -> str:
    what = "this deal" if object_name == "Opportunity" else "this account"
    return f"billsync cannot bill {what}: {reason}"


# ------------------------------------------------------------------ flags and marks


def target_of(session: Session, object_name: str, record_id: str, kind: str) -> tuple[str, str] | None:
    """The Salesforce record that shows a review: the record itself, or the Account of a deleted deal."""
    if kind == "deleted":
        if object_name != "Opportunity":
            return None
        synced = session.get(SyncedRecord, (object_name, record_id))
        account = _command_data(synced).get("salesforce_account_id") if synced is not None else None
        return ("Account", account) if isinstance(account, str) and _SALESFORCE_ID.fullmatch(account) else None
    return (object_name, record_id) if object_name in TARGET_OBJECTS else None


def _command_data(synced: SyncedRecord | None) -> dict[str, Any]:
    if synced is None or not synced.command_json:
        return {}
    try:
        data = json.loads(synced.command_json).get("data")
    except (ValueError, AttributeError):
        return {}
    return data if isinstance(data, dict) else {}


def raise_review_flag(session: Session, object_name: str, record_id: str, kind: str, reason: str,
                      engine_id: str | None, now: datetime, *, summary: str | None = None) -> bool:
    """Record (or refresh) a review and what its record shows; True when it is new or was resolved before."""
    if kind not in REVIEW_KINDS:
        raise ValueError(f"unknown review kind {kind!r}")
    flag = session.exec(select(ReviewFlag).where(ReviewFlag.object_name == object_name,
                                                 ReviewFlag.record_id == record_id,
                                                 ReviewFlag.kind == kind)).first()
    if flag is not None and flag.resolved_at is None and flag.reason == reason:
        return False
    if flag is None:
        flag = ReviewFlag(object_name=object_name, record_id=record_id, kind=kind, reason=reason,
                          engine_id=engine_id, created_at=now)
    else:
        flag.reason, flag.engine_id, flag.created_at = reason, engine_id, now
        flag.resolved_at = flag.noted_in_salesforce_at = None
        flag.resolution = flag.resolution_note = None
    flag.summary = shorten(summary or reason)
    target = target_of(session, object_name, record_id, kind)
    flag.target_object, flag.target_id = target if target else (None, None)
    session.add(flag)
    session.flush()
    if target:
        refresh_mark(session, *target, now=now)
    return True


def note_refusal(session: Session, object_name: str, record_id: str, reason: str, now: datetime) -> None:
    """An Opportunity or Account the pull could not apply: a ``refused`` review shown on it."""
    if object_name in TARGET_OBJECTS:
        raise_review_flag(session, object_name, record_id, "refused", reason, None, now,
                          summary=refused_summary(object_name, reason))


def clear_refusal(session: Session, object_name: str, record_id: str, now: datetime) -> None:
    """The record applies now (or is gone): its ``refused`` review closes by itself."""
    if object_name not in TARGET_OBJECTS:
        return
    flag = session.exec(select(ReviewFlag).where(ReviewFlag.object_name == object_name,
                                                 ReviewFlag.record_id == record_id, ReviewFlag.kind == "refused",
                                                 ReviewFlag.resolved_at.is_(None))).first()
    if flag is not None:
        _close(session, flag, "applied", None, now)


def _close(session: Session, flag: ReviewFlag, resolution: str, note: str | None, now: datetime) -> None:
    flag.resolved_at, flag.resolution, flag.resolution_note = now, resolution, note
    session.add(flag)
    session.flush()
    if flag.target_object and flag.target_id:
        refresh_mark(session, flag.target_object, flag.target_id, now=now)


def refresh_mark(session: Session, object_name: str, record_id: str, *, now: datetime) -> None:
    """Recompute what a record shows from its open reviews; a change is queued for the push."""
    flags = session.exec(select(ReviewFlag).where(ReviewFlag.target_object == object_name,
                                                  ReviewFlag.target_id == record_id,
                                                  ReviewFlag.resolved_at.is_(None))
                         .order_by(ReviewFlag.created_at, ReviewFlag.id)).all()
    flagged = bool(flags)
    reason = shorten(" | ".join(dict.fromkeys(f.summary or f.reason for f in flags))) if flags else None
    mark = session.exec(select(ReviewMark).where(ReviewMark.object_name == object_name,
                                                 ReviewMark.record_id == record_id)).first()
    if mark is None:
        if not flagged:
            return  # never shown: nothing to clear
        mark = ReviewMark(object_name=object_name, record_id=record_id, flagged=flagged, reason=reason,
                          changed_at=now)
    elif mark.flagged == flagged and mark.reason == reason:
        return
    mark.flagged, mark.reason, mark.changed_at = flagged, reason, now
    mark.status, mark.attempts, mark.next_attempt_at, mark.last_error = "pending", 0, None, None
    mark.claimed_by = mark.claimed_at = mark.settled_at = None
    session.add(mark)
    session.flush()


# ------------------------------------------------------------------ list


@dataclass(frozen=True)
class ReviewItem:
    id: int
    object_name: str
    record_id: str
    kind: str
    reason: str  # what a rep reads
    detail: str  # the server-side reason
    engine_id: str | None
    since: datetime
    shown_on: str | None  # "Opportunity 006…", or None when no record can show it
    in_salesforce: str  # shown, pending, failed: ..., not shown


def open_reviews(session: Session) -> list[ReviewItem]:
    """Every open review, oldest first, with where it is shown and whether Salesforce shows it yet."""
    flags = session.exec(select(ReviewFlag).where(ReviewFlag.resolved_at.is_(None))
                         .order_by(ReviewFlag.created_at, ReviewFlag.id)).all()
    marks = {(m.object_name, m.record_id): m for m in session.exec(select(ReviewMark)).all()}
    items = []
    for f in flags:
        mark = marks.get((f.target_object, f.target_id)) if f.target_object and f.target_id else None
        if mark is None:
            state = "not shown"
        elif mark.status == "done":
            state = "shown"
        elif mark.last_error:
            state = f"{'failed' if mark.status == 'dead' else 'retrying'}: {mark.last_error}"
        else:
            state = "pending"
        items.append(ReviewItem(f.id or 0, f.object_name, f.record_id, f.kind, f.summary or f.reason, f.reason,
                                f.engine_id, f.created_at,
                                f"{f.target_object} {f.target_id}" if f.target_object else None, state))
    return items


# ------------------------------------------------------------------ resolve


@dataclass(frozen=True)
class Resolution:
    review_id: int
    action: str
    message: str


def check_resolution(action: str, on: date | None, note: str | None) -> list[str]:
    """Problems of the request itself, before any review is read (one line each)."""
    problems = []
    if action not in ACTIONS:
        problems.append(f"--action {action!r}: must be one of {', '.join(ACTIONS)}")
    if action == "cancel" and on is None:
        problems.append("--on: cancel needs the date the subscription ends (YYYY-MM-DD)")
    if action in ACTIONS and action != "cancel" and on is not None:
        problems.append(f"--on: only cancel takes a date, not {action}")
    if not (note or "").strip():
        problems.append("--note: say why (it is kept with the review)")
    return problems


def resolve_review(services: Services, review_id: int, action: str, *, on: date | None = None,
                   note: str | None = None, now: datetime | None = None) -> Resolution:
    """Settle one open review: ``keep`` billing, ``cancel`` the subscription from ``on``, or
    ``reapply`` the deal as it stands in Salesforce. Raises ``ReviewError`` (one line per problem)."""
    from connector.database import transaction

    now = utc_now(now)
    problems = check_resolution(action, on, note)
    if problems:
        raise ReviewError(problems)
    note = (note or "").strip()
    with Session(services.engine) as session:
        flag = open_review(session, review_id)
        kind, object_name, record_id = flag.kind, flag.object_name, flag.record_id
    if action == "reapply":
        return _reapply(services, review_id, kind, object_name, record_id, note, now)
    with transaction(services.engine) as session:
        return settle_review(session, review_id, action, on=on, note=note, now=now)


class ReviewNotFoundError(ReviewError):
    """No review has this id."""


class ReviewClosedError(ReviewError):
    """The review is already resolved, or the decision cannot be carried out."""


def open_review(session: Session, review_id: int) -> ReviewFlag:
    """The open review ``review_id``; raises ``ReviewNotFoundError`` or ``ReviewClosedError``."""
    flag = session.get(ReviewFlag, review_id)
    if flag is None:
        raise ReviewNotFoundError(f"review {review_id}: no such review (see 'billsync review list')")
    if flag.resolved_at is not None:
        raise ReviewClosedError(f"review {review_id}: already resolved ({flag.resolution or 'closed'} on "
                                f"{flag.resolved_at.date().isoformat()})")
    return flag


def settle_review(session: Session, review_id: int, action: str, *, on: date | None, note: str,
                  now: datetime) -> Resolution:
    """Settle one open review with ``keep`` or ``cancel`` in the caller's transaction (``reapply`` reads
    the deal from Salesforce first: ``resolve_review``). Raises ``ReviewError``: ``ReviewNotFoundError``,
    ``ReviewClosedError`` (already resolved, or a cancellation the review cannot carry out)."""
    problems = check_resolution(action, on, note)
    if action == "reapply":
        problems.append("--action reapply: reads the deal from Salesforce first (resolve_review)")
    if problems:
        raise ReviewError(problems)
    note = note.strip()
    flag = open_review(session, review_id)
    if action == "cancel":
        assert on is not None
        message = _cancel(session, flag, on, note, now)
    else:
        if flag.kind == "refused":  # stop retrying this version; an edit in Salesforce brings it back
            error = session.exec(select(SyncRecordError).where(
                SyncRecordError.object_name == flag.object_name,
                SyncRecordError.record_id == flag.record_id)).first()
            if error is not None:
                session.delete(error)
        message = (f"review {review_id}: kept as billed; {flag.object_name} {flag.record_id} is no longer "
                   "flagged")
    _close(session, flag, action, note, now)
    return Resolution(review_id, action, message)


def _cancel(session: Session, flag: ReviewFlag, on: date, note: str, now: datetime) -> str:
    from billing_engine.errors import BillingError
    from billing_engine.use_cases import subscriptions as subscriptions_uc

    subscription_id = flag.engine_id if flag.kind != "refused" and flag.object_name == "Opportunity" else None
    if not subscription_id:
        what = ("billsync could not apply it, so nothing is billed: resolve it with keep or reapply"
                if flag.kind == "refused" else "it is about a customer, not one subscription: cancel its "
                "subscriptions one by one, then keep")
        raise ReviewClosedError(f"review {flag.id}: cannot cancel: {what}")
    try:
        cancelled = subscriptions_uc.cancel_subscription(
            session, subscription_id, on, immediate=True, amendment_id=f"review-{flag.id}",
            reason=f"billsync review {flag.id}: {note}", now=now)
        if flag.kind != "deleted":  # write the subscription's status back onto the deal
            subscriptions_uc.announce_subscription_change(session, subscription_id, customer_id=cancelled.customer_id,
                                                          opportunity_id=flag.record_id, now=now)
    except BillingError as exc:
        raise ReviewClosedError(f"review {flag.id}: cannot cancel {subscription_id} on {on.isoformat()}: "
                                f"{exc}") from None
    return f"review {flag.id}: cancelled {subscription_id} from {on.isoformat()}"


def _reapply(services: Services, review_id: int, kind: str, object_name: str, record_id: str, note: str,
             now: datetime) -> Resolution:
    from connector.database import transaction
    from connector.sync.pull import PullError, pull_records

    if kind == "deleted":
        raise ReviewError(f"review {review_id}: {object_name} {record_id} is deleted in Salesforce: there is "
                          "nothing to re-apply; resolve it with keep or cancel")
    try:
        pull_records(services, object_name, [record_id], now=now)
    except PullError as exc:
        raise ReviewError([f"review {review_id}: {line}" for line in exc.lines]) from None
    with transaction(services.engine) as session:
        flag = session.get(ReviewFlag, review_id)
        assert flag is not None
        synced = session.get(SyncedRecord, (object_name, record_id))
        if kind == "refused":
            if flag.resolved_at is None:
                error = session.exec(select(SyncRecordError.reason).where(
                    SyncRecordError.object_name == object_name, SyncRecordError.record_id == record_id)).first()
                raise ReviewError(f"review {review_id}: {object_name} {record_id} still cannot be applied: "
                                  f"{error or flag.reason}")
            flag.resolution, flag.resolution_note = "reapply", note
            session.add(flag)
            return Resolution(review_id, "reapply", f"review {review_id}: {object_name} {record_id} applied")
        if kind == "reverted":
            if synced is None or synced.state != "applied":
                raise ReviewError(f"review {review_id}: {object_name} {record_id} still does not match the "
                                  "mapping's filter (it is not won): resolve it with keep or cancel")
            _close(session, flag, "reapply", note, now)
            return Resolution(review_id, "reapply", f"review {review_id}: {object_name} {record_id} is won again; "
                                                    "billing continues")
        if flag.resolved_at is not None:  # pulling it again settled it
            return Resolution(review_id, "reapply", f"review {review_id}: already settled by the pull")
        message = _reapply_won_deal(session, flag, synced, now)
        _close(session, flag, "reapply", note, now)
    return Resolution(review_id, "reapply", message)


def _reapply_won_deal(session: Session, flag: ReviewFlag, synced: SyncedRecord | None, now: datetime) -> str:
    """Amend the subscription so that it matches the deal as it stands, from the subscription's start."""
    from billing_engine.errors import BillingError
    from billing_engine.subscriptions import Amendment, AmendmentAction
    from billing_engine.use_cases import subscriptions as subscriptions_uc
    from connector.sync.apply import ApplyError, amendment_actions, find_price

    if synced is None or synced.command != "start_subscription" or not flag.engine_id:
        raise ReviewError(f"review {flag.id}: re-apply works for a won New Business deal; this "
                          f"{synced.command if synced else 'record'} changed after it was applied: record "
                          "the change as another deal, or resolve it with keep or cancel")
    command = json.loads(synced.command_json)
    data = command.get("data") or {}
    try:
        subscription = subscriptions_uc.get_subscription(session, flag.engine_id)
    except BillingError as exc:
        raise ReviewError(f"review {flag.id}: {exc}") from None
    if str(data.get("starts_on")) != subscription.starts_on.isoformat():
        raise ReviewError(f"review {flag.id}: the deal's start date is now {data.get('starts_on')} but "
                          f"{subscription.subscription_id} started on {subscription.starts_on.isoformat()}: re-apply "
                          "changes the lines only; cancel it and win a new deal instead")
    from connector.sync.apply import decimals_of

    lines = [decimals_of(line) for line in data.get("items") or []]
    key = f"{command['key']}-r{flag.id}"
    request = {**command, "key": key, "data": {**data, "items": lines, "starts_on": subscription.starts_on}}

    def price_of(line: Mapping[str, Any]) -> Any:
        price = find_price(session, line.get("product_code"), subscription.currency)
        if price is None:
            raise ReviewError(f"review {flag.id}: product {line.get('product_code')} has no price in "
                              f"{subscription.currency}")
        return price

    try:
        actions = amendment_actions(subscription, request, price_of)
        kept = {line.get("salesforce_line_id") for line in lines} | {line.get("product_code") for line in lines}
        version = subscription.version_on(subscription.starts_on)
        touched = {a.item_id for a in actions if a.item_id}
        for item_id, item in (version.items if version else {}).items():
            if item_id not in kept and item.price.product.code not in kept and item_id not in touched:
                actions.append(Amendment(f"{key}-{len(actions) + 1}", 0, AmendmentAction.REMOVE_ITEM,
                                         subscription.starts_on, item_id=item_id,
                                         reason=f"Salesforce opportunity {command['key']}"))
        for amendment in actions:
            subscriptions_uc.amend_subscription(session, subscription.subscription_id,
                                                replace(amendment, reason=f"billsync review {flag.id}"), now=now)
        if actions:
            subscriptions_uc.announce_subscription_change(session, subscription.subscription_id,
                                                          customer_id=subscription.customer_id,
                                                          opportunity_id=command["key"], now=now)
    except (ApplyError, BillingError) as exc:
        raise ReviewError(f"review {flag.id}: cannot re-apply: {exc}") from None
    if not actions:
        return f"review {flag.id}: {subscription.subscription_id} already matches the deal"
    return (f"review {flag.id}: {subscription.subscription_id} now matches the deal from "
            f"{subscription.starts_on.isoformat()} ({len(actions)} change(s))")


__all__ = [
    "ACTIONS", "REASON_LENGTH", "TARGET_OBJECTS", "Resolution", "ReviewError", "ReviewItem", "changed_summary",
    "check_resolution", "clear_refusal", "deleted_deal_summary", "describe_deal_change", "note_refusal",
    "open_reviews", "raise_review_flag", "refresh_mark", "refused_summary", "resolve_review", "reverted_summary",
    "shorten", "target_of",
]
