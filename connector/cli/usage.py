"""``billsync usage import`` and ``billsync usage partitions``: thin wrappers over the usage use cases.

``usage import FILE.csv`` sends a CSV file's rows through the same ingestion as
``POST /api/v1/usage-events`` (``billing_engine.use_cases.usage.ingest_usage_events``), in
batches of 1,000 rows, one transaction per batch. The CSV format is in docs/usage.md: a
header row naming the columns ``transaction_id``, ``subscription_id`` and/or ``customer_id``,
``metric``, ``quantity``, ``timestamp``, in any order.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import click

from billing_engine.periods import add_months
from billing_engine.usage import MAX_BATCH_EVENTS
from connector.cli.support import UserError, load_services, reported_as
from connector.scheduler import PARTITION_MONTHS_AHEAD

COLUMNS = ("transaction_id", "subscription_id", "customer_id", "metric", "quantity", "timestamp")
REQUIRED = ("transaction_id", "metric", "quantity", "timestamp")


@click.group()
def usage() -> None:
    """Usage events: import a CSV file, prepare the monthly partitions."""


def _header_problems(header: list[str] | None) -> list[str]:
    if not header:
        return ["the file is empty; its first line must name the columns: " + ", ".join(COLUMNS)]
    names = [h.strip() for h in header]
    problems = [f"unknown column {name!r}; the columns are {', '.join(COLUMNS)}"
                for name in names if name not in COLUMNS]
    problems += [f"column {name!r} appears more than once" for name in sorted(set(names)) if names.count(name) > 1]
    problems += [f"missing column {name!r}" for name in REQUIRED if name not in names]
    if "subscription_id" not in names and "customer_id" not in names:
        problems.append("missing column 'subscription_id' (or 'customer_id')")
    return problems


def _rows(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    """``(first line number, cells)`` per row that has a non-empty cell (a quoted cell may span lines)."""
    previous = 1
    for cells in reader:
        line = previous + 1
        previous = reader.line_num  # type: ignore[attr-defined]  # csv readers count the lines read
        if any(cell.strip() for cell in cells):
            yield line, cells


@usage.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def import_usage(file: Path) -> None:
    """Import usage events from a CSV file (FILE, or - for standard input).

    Rows are sent in batches of 1,000: each valid row is stored, each bad row is reported as
    one 'error: line N: field: problem' line and stored nothing. A row whose transaction id was
    stored before (by an earlier import or through the API) is a duplicate and counts once,
    so importing the same file again is safe. Exit code 2 when any row failed (the valid
    rows are stored all the same), 0 otherwise.
    """
    services = load_services()
    from billing_engine.use_cases.usage import ERROR, ingest_usage_events
    from connector.database import transaction

    lines = 0
    if str(file) == "-":
        stream: IO[str] = sys.stdin
    else:
        try:
            with file.open("rb") as raw:
                lines = sum(1 for _ in raw)
            stream = file.open(newline="", encoding="utf-8-sig")
        except OSError as exc:
            raise UserError(f"{file}: {exc.strerror or exc}") from None
    counts = {"accepted": 0, "duplicate": 0, "error": 0}
    errors: list[tuple[int, str]] = []  # (line, problem), printed in line order

    def send(batch: list[tuple[int, list[str]]], names: list[str]) -> None:
        events = [{name: cell.strip() for name, cell in zip(names, cells, strict=False) if cell.strip()}
                  for _, cells in batch]
        with reported_as(f"{file}: line {batch[0][0]}"), transaction(services.engine) as session:
            result = ingest_usage_events(session, events, now=datetime.now(UTC),
                                         max_age_days=services.settings.usage_max_age_days)
        for outcome in result.results:
            counts[outcome.status] += 1
            if outcome.status == ERROR:
                line = batch[outcome.index][0]
                errors.extend((line, f"{e.field or 'row'}: {e.message}") for e in outcome.errors)

    with stream:
        reader = csv.reader(stream)
        try:
            header = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UserError(f"{file}: line 1: {exc}") from None
        problems = _header_problems(header)
        if problems:
            raise UserError([f"{file}: {p}" for p in problems])
        names = [h.strip() for h in header or ()]
        batch: list[tuple[int, list[str]]] = []
        with click.progressbar(length=max(lines - 1, 1), label="importing usage events", file=sys.stderr,
                               show_pos=True, hidden=lines == 0) as bar:
            try:
                for line, cells in _rows(reader):
                    if len(cells) > len(names):
                        errors.append((line, f"row: {len(cells)} cells for {len(names)} columns; not imported"))
                        counts["error"] += 1
                        continue
                    batch.append((line, cells))
                    if len(batch) == MAX_BATCH_EVENTS:
                        send(batch, names)
                        batch = []
                        bar.update(reader.line_num - 1 - bar.pos)
            except (csv.Error, UnicodeDecodeError) as exc:
                errors.append((reader.line_num + 1, f"{exc}; the rest of the file was not read"))
                counts["error"] += 1
            if batch:
                send(batch, names)
            bar.update(reader.line_num - 1 - bar.pos)
    click.echo(f"{file}: {sum(counts.values())} rows: {counts['accepted']} accepted, {counts['duplicate']} "
               f"duplicates (already stored), {counts['error']} failed")
    if errors:
        raise UserError([f"line {line}: {problem}" for line, problem in sorted(errors, key=lambda e: e[0])]
                        + ["1 row failed and was not stored; the other rows were" if counts["error"] == 1 else
                           f"{counts['error']} rows failed and were not stored; the other rows were"])


@usage.command("partitions")
@click.option("--months-ahead", default=PARTITION_MONTHS_AHEAD, show_default=True, type=click.IntRange(0, 120),
              help="Prepare the partitions up to this many months after the current one.")
def partitions(months_ahead: int) -> None:
    """Create the monthly partitions of usage events ahead (PostgreSQL).

    Also moves events that landed in the default partition (a month that had no partition
    yet) into their month's partition. The clock does this at start and every 6 hours; on
    SQLite there is nothing to do.
    """
    services = load_services()
    from connector.billing_jobs import prepare_usage_partitions, today_in

    through = add_months(today_in(services.settings.billsync_timezone).replace(day=1), months_ahead)
    with reported_as("usage partitions"):
        report = prepare_usage_partitions(services, through)
    if services.settings.is_sqlite:
        click.echo("usage partitions: SQLite keeps usage events in one table; nothing to prepare")
        return
    months = ", ".join(f"{m:%Y-%m}" for m in report.created) or "none (all there)"
    click.echo(f"usage partitions through {through:%Y-%m}: created {months}; "
               f"{report.moved} events moved out of the default partition")

