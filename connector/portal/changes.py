"""Changes a customer makes in the portal: previewed first, then confirmed exactly as previewed.

A preview applies the amendment in a transaction that is rolled back and stores what it showed
(``portal_changes``): the amendment (item, quantity or cancellation), its effective date and the
figures — what the bill run of today adds and the next period's invoice, to the cent. Confirming
records that same amendment with that same date through the engine's use cases, once; a preview
that expired (``PORTAL_PREVIEW_MINUTES``), made on another day, or made before the subscription
changed again is refused, and the customer previews again (docs/self-service.md, *Timing rules*).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select, update
from sqlmodel import Session

from billing_engine.catalog import ChargeType, Price
from billing_engine.errors import InvalidInputError, NotFoundError
from billing_engine.periods import period_containing
from billing_engine.subscriptions import Amendment, AmendmentAction, Subscription, SubscriptionItem
from billing_engine.use_cases import audit
from billing_engine.use_cases import catalog as catalog_uc
from billing_engine.use_cases import subscriptions as subscriptions_uc
from billing_engine.use_cases.preview import ChargesPreview, preview_change_invoices
from connector.database import transaction
from connector.portal.tables import PortalChangeRow
from connector.settings import Settings

#: The reasons a customer picks from when cancelling (with free text besides).
CANCEL_REASONS = ("too_expensive", "missing_features", "not_using", "switching", "temporary", "other")
MAX_QUANTITY = Decimal(100000)
MAX_REASON_TEXT = 500
QUANTITY, PLAN, CANCEL = "quantity", "plan", "cancel"
#: Why a confirmation is refused.
EXPIRED, STALE, CONFIRMED, REPRICED = "expired", "stale", "confirmed", "repriced"


class ChangeRefusedError(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def business_today(settings: Settings, now: datetime) -> date:
    """The day the bill run counts in (``BILLSYNC_TIMEZONE``)."""
    return now.astimezone(ZoneInfo(settings.billsync_timezone)).date()


def owned_subscription(session: Session, customer_id: str, subscription_id: str, *,
                       for_update: bool = False) -> Subscription:
    """The customer's subscription; someone else's is not found, like one that does not exist.
    ``for_update``: locked until the transaction ends."""
    try:
        subscription = subscriptions_uc.get_subscription(session, subscription_id, for_update=for_update)
    except NotFoundError:
        raise NotFoundError("subscription", "(not yours)") from None
    if subscription.customer_id != customer_id:
        raise NotFoundError("subscription", "(not yours)")
    return subscription


def next_period_start(subscription: Subscription, today: date) -> date:
    anchor = subscription.billing_anchor_on or subscription.starts_on
    return period_containing(anchor, subscription.interval, max(today, subscription.starts_on)).ends_before


def effective_date(settings: Settings, subscription: Subscription, today: date, *, increase: bool) -> date:
    """``PORTAL_UPGRADE_TIMING`` / ``PORTAL_DOWNGRADE_TIMING``: today, or the next period's start."""
    timing = settings.portal_upgrade_timing if increase else settings.portal_downgrade_timing
    return max(today, subscription.starts_on) if timing == "now" else next_period_start(subscription, today)


def parse_quantity(text: str) -> Decimal:
    try:
        quantity = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise InvalidInputError("quantity", f"{text!r} is not a number") from None
    if not quantity.is_finite() or quantity != quantity.to_integral_value() or not 1 <= quantity <= MAX_QUANTITY:
        raise InvalidInputError("quantity", f"must be a whole number from 1 to {MAX_QUANTITY}")
    return quantity.quantize(Decimal(1))


def changeable_items(subscription: Subscription, today: date) -> list[Any]:
    """The items whose quantity the customer may change: recurring ones of the version in force."""
    version = subscription.version_on(max(today, subscription.starts_on))
    if version is None:
        return []
    return [item for item in version.items.values() if item.price.charge_type is ChargeType.RECURRING]


def _figures(preview: ChargesPreview) -> dict[str, Any]:
    def lines(found: Any) -> list[dict[str, str]]:
        return [{"description": ln.description, "explanation": ln.explanation, "quantity": str(ln.quantity),
                 "unit_price": str(ln.unit_price), "amount": str(ln.amount)} for ln in found]

    return {"on": preview.on.isoformat(), "currency": preview.currency, "lines": lines(preview.lines),
            "credit_lines": lines(preview.credit_lines),
            "subtotal": str(preview.subtotal), "discount": str(preview.discount), "tax": str(preview.tax),
            "total": str(preview.total),
            "credit_note_total": None if preview.credit_note_total is None else str(preview.credit_note_total)}


@dataclass(frozen=True)
class _Draft:
    subscription_id: str
    kind: str
    amendments: tuple[Amendment, ...]
    item_id: str | None = None
    quantity: Decimal | None = None
    reason_code: str | None = None
    reason_text: str = ""
    price_id: str | None = None
    new_item_id: str | None = None

    @property
    def effective_on(self) -> date:
        return self.amendments[0].effective_on


def _draft_figures(session: Session, settings: Settings, customer_id: str, draft: _Draft, *, today: date,
                   now: datetime) -> dict[str, Any]:
    """The figures a preview shows: the draft's amendments applied in ``session`` (the caller undoes
    them), what the bill run of today adds, the next invoice, the MRR before and after."""
    before = owned_subscription(session, customer_id, draft.subscription_id)
    next_on = next_period_start(before, today)
    for amendment in draft.amendments:
        after = subscriptions_uc.amend_subscription(session, draft.subscription_id, amendment, now=now)
    due_today, next_invoice = preview_change_invoices(
        session, draft.subscription_id, before, today, max(next_on, draft.effective_on),
        default_tax_percent=settings.default_tax_rate, seller_country=settings.seller_country)
    mrr_on = draft.effective_on if draft.kind != CANCEL else (after.ends_before or next_on)
    return {
        "today": _figures(due_today), "next": _figures(next_invoice),
        "mrr_before": str(subscriptions_uc.subscription_overview(before, mrr_on - timedelta(days=1)).mrr),
        "mrr_after": str(subscriptions_uc.subscription_overview(after, mrr_on).mrr),
        "ends_before": after.ends_before.isoformat() if after.ends_before else None,
        "currency": before.currency,
    }


def _amounts(figures: dict[str, Any]) -> dict[str, Any]:
    """The amounts and dates of a preview's figures (its lines' wording aside)."""
    return {key: ({k: v for k, v in value.items() if k not in ("lines", "credit_lines")}
                  if isinstance(value, dict) else value)
            for key, value in figures.items()}


def _preview(engine: Engine, settings: Settings, customer_id: str, draft: _Draft, *, today: date,
             amendments: int, now: datetime) -> PortalChangeRow:
    with Session(engine, expire_on_commit=False) as session:
        try:
            figures = _draft_figures(session, settings, customer_id, draft, today=today, now=now)
        finally:
            session.rollback()
    row = PortalChangeRow(
        public_id=secrets.token_urlsafe(16), customer_id=customer_id, subscription_id=draft.subscription_id,
        kind=draft.kind, item_id=draft.item_id, quantity=None if draft.quantity is None else str(draft.quantity),
        price_id=draft.price_id, new_item_id=draft.new_item_id,
        effective_on=draft.effective_on, previewed_on=today, amendments=amendments,
        reason_code=draft.reason_code, reason_text=draft.reason_text, preview=json.dumps(figures),
        created_at=now, expires_at=now + timedelta(minutes=settings.portal_preview_minutes))
    with transaction(engine) as session:
        session.add(row)
    return row


def preview_quantity(engine: Engine, settings: Settings, *, customer_id: str, subscription_id: str, item_id: str,
                     quantity_text: str, now: datetime) -> PortalChangeRow:
    """Preview a new quantity for one of the customer's items, with the timing rule's date."""
    quantity = parse_quantity(quantity_text)
    today = business_today(settings, now)
    with Session(engine) as session:
        subscription = owned_subscription(session, customer_id, subscription_id)
    items = {item.item_id: item for item in changeable_items(subscription, today)}
    if item_id not in items:
        raise NotFoundError("item", "(not yours)")
    current = items[item_id].quantity
    if quantity == current:
        raise InvalidInputError("quantity", f"is already {current}")
    effective_on = effective_date(settings, subscription, today, increase=quantity > current)
    amendment = Amendment("", 0, AmendmentAction.CHANGE_QUANTITY, effective_on, item_id=item_id, quantity=quantity,
                          reason="customer portal")
    return _preview(engine, settings, customer_id,
                    _Draft(subscription_id, QUANTITY, (amendment,), item_id=item_id, quantity=quantity),
                    today=today, amendments=len(subscription.amendments), now=now)


def plan_options(session: Session, subscription: Subscription, item: Any) -> list[Price]:
    """The plans an item may switch to: the other self-service prices in its currency and interval."""
    if item.price.interval is None:
        return []
    return [price for price in catalog_uc.self_service_prices(session, subscription.currency,
                                                               item.price.interval.value)
            if price.price_id != item.price.price_id]


def _plan_switch(current: Subscription, item: Any, price: Price, new_item_id: str, effective_on: date
                 ) -> tuple[Amendment, ...]:
    """The old plan's item removed and the new plan's added, with the same quantity, on the same day."""
    return (Amendment("", 0, AmendmentAction.REMOVE_ITEM, effective_on, item_id=item.item_id,
                      reason="customer portal: plan switch"),
            Amendment("", 0, AmendmentAction.ADD_ITEM, effective_on,
                      item=SubscriptionItem(new_item_id, price, quantity=item.quantity),
                      reason="customer portal: plan switch"))


def preview_plan_switch(engine: Engine, settings: Settings, *, customer_id: str, subscription_id: str, item_id: str,
                        price_id: str, now: datetime) -> PortalChangeRow:
    """Preview moving an item to another self-service plan (same quantity), with the timing rule's date:
    a plan that costs more a month is an upgrade, one that costs less a downgrade."""
    from billing_engine.use_cases.revenue import item_monthly_amount

    today = business_today(settings, now)
    with Session(engine) as session:
        subscription = owned_subscription(session, customer_id, subscription_id)
        items = {item.item_id: item for item in changeable_items(subscription, today)}
        if item_id not in items:
            raise NotFoundError("item", "(not yours)")
        options = {p.price_id: p for p in plan_options(session, subscription, items[item_id])}
    if price_id not in options:
        raise InvalidInputError("plan", "choose one of the plans offered")
    item, price = items[item_id], options[price_id]
    new_item_id = f"{item_id[:40]}-{secrets.token_hex(4)}"
    new_item = SubscriptionItem(new_item_id, price, quantity=item.quantity)
    old_monthly = item_monthly_amount(item, {item.item_id: item}) or Decimal(0)
    new_monthly = item_monthly_amount(new_item, {new_item_id: new_item}) or Decimal(0)
    effective_on = effective_date(settings, subscription, today, increase=new_monthly > old_monthly)
    return _preview(engine, settings, customer_id,
                    _Draft(subscription_id, PLAN, _plan_switch(subscription, item, price, new_item_id, effective_on),
                           item_id=item_id, quantity=item.quantity, price_id=price_id, new_item_id=new_item_id),
                    today=today, amendments=len(subscription.amendments), now=now)


def preview_cancellation(engine: Engine, settings: Settings, *, customer_id: str, subscription_id: str,
                         reason_code: str, reason_text: str, now: datetime) -> PortalChangeRow:
    """Preview cancelling at the end of the current period (of the term, for a subscription with one)."""
    if reason_code not in CANCEL_REASONS:
        raise InvalidInputError("reason", "choose a reason")
    reason_text = (reason_text or "").strip()
    if len(reason_text) > MAX_REASON_TEXT or any(ord(c) < 32 and c not in "\r\n\t" for c in reason_text):
        raise InvalidInputError("details", f"at most {MAX_REASON_TEXT} printable characters")
    if reason_code == "other" and not reason_text:
        raise InvalidInputError("details", "say why in a few words")
    today = business_today(settings, now)
    with Session(engine) as session:
        subscription = owned_subscription(session, customer_id, subscription_id)
    amendment = Amendment("", 0, AmendmentAction.CANCEL, max(today, subscription.starts_on),
                          reason=_cancel_reason(reason_code, reason_text))
    return _preview(engine, settings, customer_id,
                    _Draft(subscription_id, CANCEL, (amendment,), reason_code=reason_code, reason_text=reason_text),
                    today=today, amendments=len(subscription.amendments), now=now)


def _check_figures(session: Session, settings: Settings, row: PortalChangeRow, current: Subscription, *,
                   today: date, now: datetime) -> None:
    """``ChangeRefusedError`` unless the change, previewed again now, shows the amounts its preview
    showed (prices, tiers, tax and the plans offered may have changed since); nothing is written."""
    if row.kind == QUANTITY:
        amendments: tuple[Amendment, ...] = (Amendment(
            "", 0, AmendmentAction.CHANGE_QUANTITY, row.effective_on, item_id=row.item_id,
            quantity=Decimal(row.quantity or "0"), reason="customer portal"),)
    elif row.kind == PLAN:
        item = next((i for i in changeable_items(current, today) if i.item_id == row.item_id), None)
        if item is None or row.price_id is None or row.new_item_id is None:
            raise ChangeRefusedError(STALE)
        offered = {p.price_id: p for p in plan_options(session, current, item)}
        if row.price_id not in offered:
            raise ChangeRefusedError(REPRICED)
        amendments = _plan_switch(current, item, offered[row.price_id], row.new_item_id, row.effective_on)
    else:
        amendments = (Amendment("", 0, AmendmentAction.CANCEL, row.effective_on,
                                reason=_cancel_reason(row.reason_code or "other", row.reason_text)),)
    draft = _Draft(row.subscription_id, row.kind, amendments)
    savepoint = session.begin_nested()
    try:
        figures = _draft_figures(session, settings, row.customer_id, draft, today=today, now=now)
    finally:
        savepoint.rollback()
    if _amounts(figures) != _amounts(figures_of(row)):
        raise ChangeRefusedError(REPRICED)


def _cancel_reason(code: str, text: str) -> str:
    return f"customer portal: {code}" + (f": {text}" if text else "")


def find_change(session: Session, customer_id: str, public_id: str) -> PortalChangeRow:
    row = session.scalars(select(PortalChangeRow).where(PortalChangeRow.public_id == public_id)).first()
    if row is None or row.customer_id != customer_id:
        raise NotFoundError("change", "(not yours)")
    return row


def figures_of(row: PortalChangeRow) -> dict[str, Any]:
    return json.loads(row.preview)


def confirm_change(engine: Engine, settings: Settings, *, customer_id: str, public_id: str, now: datetime,
                   request_id: str | None = None) -> tuple[PortalChangeRow, Subscription]:
    """Record the previewed amendment exactly (same action, quantity and effective date), once, with
    its audit entry; ``ChangeRefusedError`` when the preview expired, is stale or was confirmed."""
    today = business_today(settings, now)
    with transaction(engine) as session:
        row = find_change(session, customer_id, public_id)
        if row.confirmed_at is not None:
            raise ChangeRefusedError(CONFIRMED)
        if now >= row.expires_at or today != row.previewed_on:
            raise ChangeRefusedError(EXPIRED)
        current = owned_subscription(session, customer_id, row.subscription_id, for_update=True)
        if len(current.amendments) != row.amendments:
            raise ChangeRefusedError(STALE)
        _check_figures(session, settings, row, current, today=today, now=now)
        table = PortalChangeRow.__table__  # type: ignore[attr-defined]
        claimed = session.execute(update(table).where(table.c.id == row.id, table.c.confirmed_at.is_(None))
                                  .values(confirmed_at=now)).rowcount  # type: ignore[attr-defined]
        if claimed != 1:
            raise ChangeRefusedError(CONFIRMED)
        amendment_id = current.next_amendment_id()
        before_quantity: str | None = None
        if row.kind == QUANTITY:
            before_quantity = next((str(i.quantity) for i in changeable_items(current, today)
                                    if i.item_id == row.item_id), None)
            changed = subscriptions_uc.amend_subscription(session, row.subscription_id, Amendment(
                amendment_id, 0, AmendmentAction.CHANGE_QUANTITY, row.effective_on, item_id=row.item_id,
                quantity=Decimal(row.quantity or "0"), reason="customer portal"), now=now)
            before: dict[str, Any] = {"item_id": row.item_id, "quantity": before_quantity}
            after: dict[str, Any] = {"item_id": row.item_id, "quantity": row.quantity,
                                     "effective_on": row.effective_on}
            action = "portal.quantity_changed"
        elif row.kind == PLAN:
            item = next((i for i in changeable_items(current, today) if i.item_id == row.item_id), None)
            if item is None or row.price_id is None or row.new_item_id is None:
                raise ChangeRefusedError(STALE)
            price = catalog_uc.get_price(session, row.price_id)
            changed = current
            for amendment in _plan_switch(current, item, price, row.new_item_id, row.effective_on):
                changed = subscriptions_uc.amend_subscription(session, row.subscription_id, replace(
                    amendment, amendment_id=changed.next_amendment_id()), now=now)
            before = {"item_id": row.item_id, "plan": item.price.product.name, "price_id": item.price.price_id}
            after = {"item_id": row.new_item_id, "plan": price.product.name, "price_id": price.price_id,
                     "effective_on": row.effective_on}
            action = "portal.plan_switched"
        else:
            changed = subscriptions_uc.cancel_subscription(
                session, row.subscription_id, row.effective_on, amendment_id=amendment_id,
                reason=_cancel_reason(row.reason_code or "other", row.reason_text), now=now)
            before = {"ends_before": current.ends_before}
            after = {"ends_before": changed.ends_before, "reason": row.reason_code, "details": row.reason_text}
            action = "portal.cancelled"
        session.execute(update(table).where(table.c.id == row.id).values(amendment_id=amendment_id))
        figures = figures_of(row)
        if row.kind == QUANTITY:
            product = next((i.price.product.name for i in changeable_items(current, today) if i.item_id == row.item_id),
                           row.item_id)
            description = f"{product}: quantity {before_quantity} → {row.quantity} from {row.effective_on}"
        elif row.kind == PLAN:
            description = f"Plan {before['plan']} → {after['plan']} ({row.quantity}) from {row.effective_on}"
        else:
            description = f"Cancelled at the end of the period ({row.reason_code}" + \
                (f": {row.reason_text})" if row.reason_text else ")")
        subscriptions_uc.announce_self_service_change(
            session, row.subscription_id, change_id=row.public_id,
            kind="cancellation" if row.kind == CANCEL else "amendment", amendment_id=amendment_id,
            effective_on=row.effective_on, mrr_before=Decimal(figures["mrr_before"]),
            mrr_after=Decimal(figures["mrr_after"]), description=description, now=now)
        audit.record_action(session, at=now, actor=f"portal:{customer_id}", action=action,
                            target_type="subscription", target_id=row.subscription_id, before=before,
                            after={**after, "amendment_id": amendment_id, "preview": figures},
                            request_id=request_id)
        row.confirmed_at, row.amendment_id = now, amendment_id
    return row, changed
