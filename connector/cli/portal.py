"""``billsync portal link``: a link to a customer's portal, for finance or a rep to send
(docs/self-service.md)."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime

import click

from connector.cli.support import UserError, load_services, reported_as


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@click.group("portal")
def portal() -> None:
    """The customer portal: links that open it."""


@portal.command("link")
@click.option("--account", "accounts", multiple=True, required=True,
              help="The customer: its billsync id or its Salesforce Account id (repeat for several).")
def link(accounts: tuple[str, ...]) -> None:
    """Print a link that opens the customer's portal once, until PORTAL_LINK_MINUTES have passed."""
    from billing_engine.errors import NotFoundError
    from connector.database import transaction
    from connector.portal.links import make_link

    services = load_services()
    now = datetime.now(UTC)
    problems: list[str] = []
    urls: list[str] = []
    with reported_as("portal link"), transaction(services.engine) as session:
        for reference in accounts:
            try:
                urls.append(make_link(session, reference, actor=_actor(), settings=services.settings,
                                      now=now).url)
            except NotFoundError:
                problems.append(f"--account {reference!r}: no customer has this id or Salesforce Account id")
        if problems:
            session.rollback()
    if problems:
        raise UserError(problems)
    for url in urls:
        click.echo(url)
