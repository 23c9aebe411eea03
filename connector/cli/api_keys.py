"""``billsync api-key create|list|revoke``: the keys the JSON API accepts (docs/api.md *Authentication*)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from connector.cli.support import UserError, load_services, reported_as


@click.group("api-key")
def api_key() -> None:
    """API keys for the JSON API (/api/v1), sent as 'Authorization: Bearer <key>'.

    Scopes: read (every GET), write (finance actions; includes read), usage (sending usage
    events only). A key is shown once, when it is created; billsync keeps only its hash.
    """


@api_key.command("create")
@click.option("--name", required=True, help="Who uses the key, e.g. finance-bot (letters, digits, . _ -).")
@click.option("--scope", "scopes", multiple=True, required=True, metavar="read|write|usage",
              help="A scope the key grants; repeat for several.")
def create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a key and print it once."""
    from connector.api.auth import ApiKeyError, create_key

    services = load_services()
    try:
        with reported_as("api-key create"):
            key, secret = create_key(services.engine, name, scopes, now=datetime.now(UTC))
    except ApiKeyError as exc:
        raise UserError(str(exc)) from None
    click.echo(secret)
    click.echo(f"created API key {key.name!r} (prefix {key.prefix}, scopes {', '.join(sorted(key.scopes))}); "
               "it is shown only now: store it in your secret manager", err=True)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else "-"


@api_key.command("list")
def list_command() -> None:
    """Every key: name, prefix, scopes, created, last used, revoked."""
    from connector.api.auth import list_keys

    services = load_services()
    with reported_as("api-key list"):
        keys = list_keys(services.engine)
    if not keys:
        click.echo("no API keys; create one with 'billsync api-key create --name NAME --scope read'")
        return
    header = ("name", "prefix", "scopes", "created", "last used", "revoked")
    rows = [(k.name, k.prefix, ",".join(sorted(k.scopes)), _when(k.created_at), _when(k.last_used_at),
             _when(k.revoked_at)) for k in keys]
    widths = [max(len(h), *(len(r[n]) for r in rows)) for n, h in enumerate(header)]
    for row in (header, *rows):
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@api_key.command("revoke")
@click.argument("name_or_prefix", metavar="NAME_OR_PREFIX")
def revoke(name_or_prefix: str) -> None:
    """Revoke a key (by name or prefix): the API refuses it within 5 seconds (a web process trusts
    a key it read for that long)."""
    from connector.api.auth import KEY_CACHE_SECONDS, ApiKeyError, revoke_key

    services = load_services()
    try:
        with reported_as("api-key revoke"):
            key, revoked = revoke_key(services.engine, name_or_prefix, now=datetime.now(UTC))
    except ApiKeyError as exc:
        raise UserError(str(exc)) from None
    if revoked:
        click.echo(f"revoked API key {key.name!r} (prefix {key.prefix}); the API refuses it within "
                   f"{KEY_CACHE_SECONDS:g} seconds")
    else:
        click.echo(f"API key {key.name!r} (prefix {key.prefix}) was already revoked on {_when(key.revoked_at)}")
