"""``billsync review list|resolve``: what billsync will not decide alone, and finance's decision."""

from __future__ import annotations

from datetime import date

import click

from connector.cli.support import UserError, load_services, reported_as

#: Largest review id (an INTEGER column): a larger one is a bad value, not a query.
REVIEW_ID_MAX = 2**31 - 1


@click.group()
def review() -> None:
    """Deals and accounts billsync flagged for a person to settle.

    A won deal edited after Closed Won, a won deal moved away from Closed Won or deleted,
    a deal or account billsync cannot apply: each is shown on the Salesforce record
    (Billing_Review_Flag__c and Billing_Review_Reason__c) until it is resolved here.
    """


@review.command("list")
def list_reviews() -> None:
    """Open reviews, oldest first: id, object, record, kind, since, and the reason a rep reads."""
    from sqlmodel import Session

    from connector.sync.review import open_reviews

    services = load_services()
    with reported_as("review list"), Session(services.engine) as session:
        items = open_reviews(session)
    if not items:
        click.echo("no open reviews")
        return
    header = ("id", "object", "record", "kind", "since", "in Salesforce")
    rows = [(str(i.id), i.object_name, i.record_id, i.kind, i.since.date().isoformat(),
             i.in_salesforce if i.shown_on is None or i.shown_on == f"{i.object_name} {i.record_id}"
             else f"{i.in_salesforce} (on {i.shown_on})") for i in items]
    widths = [max(len(h), *(len(r[n]) for r in rows)) for n, h in enumerate(header)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for item, row in zip(items, rows, strict=True):
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        click.echo(f"    reason: {item.reason}")
    click.echo(f"{len(items)} open review(s); settle one with "
               "'billsync review resolve ID --action keep|cancel|reapply [--on YYYY-MM-DD] --note TEXT'")


@review.command("resolve")
@click.argument("review_id", metavar="ID", type=click.IntRange(1, REVIEW_ID_MAX))
@click.option("--action", required=True, metavar="keep|cancel|reapply",
              help="keep billing as it is; cancel the subscription from --on; reapply the deal as it stands "
                   "in Salesforce.")
@click.option("--on", "on_text", metavar="YYYY-MM-DD", help="With --action cancel: the first day not billed.")
@click.option("--note", default="", help="Why (kept with the review).")
def resolve(review_id: int, action: str, on_text: str | None, note: str) -> None:
    """Settle one review; the flag is cleared on the Salesforce record by the next push."""
    from connector.sync.review import ReviewError, check_resolution, resolve_review

    problems = []
    on = None
    if on_text is not None:
        try:
            on = date.fromisoformat(on_text)
        except ValueError:
            problems.append(f"--on {on_text!r}: not a date (YYYY-MM-DD)")
    problems.extend(p for p in check_resolution(action, on, note)
                    if not (on_text is not None and on is None and p.startswith("--on: cancel needs")))
    if problems:
        raise UserError(problems)
    services = load_services()
    try:
        with reported_as(f"review resolve {review_id}"):
            result = resolve_review(services, review_id, action, on=on, note=note)
    except ReviewError as exc:
        raise UserError(exc.lines) from None
    click.echo(result.message)
    click.echo("the next push clears the flag on the Salesforce record ('billsync sync push', or the clock)")
