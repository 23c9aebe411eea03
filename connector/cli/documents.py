"""``billsync documents generate``: the PDF and Factur-X XML of every finalized invoice and credit note
that has none yet (the worker does the same between the inbox and the outbox)."""

from __future__ import annotations

import click

from connector.cli.support import UserError, load_services


@click.group("documents")
def documents() -> None:
    """Invoice and credit note documents (PDF/A-3 with Factur-X XML)."""


@click.command("generate")
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes rendering documents at once (2 uses both cores of a two-core machine).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Generate at most this many documents.")
def generate(processes: int, limit: int | None) -> None:
    """Generate the documents not generated yet. Refuses, one line per missing setting, until the
    seller's identity is complete (SELLER_*)."""
    from connector.documents.generate import generate_documents
    from connector.documents.seller import SellerIdentityError

    services = load_services()
    try:
        report = generate_documents(services, processes=processes, limit=limit)
    except SellerIdentityError as exc:
        raise UserError(exc.problems) from None
    finally:
        services.engine.dispose()
    for line in report.lines():
        click.echo(line)


documents.add_command(generate)
