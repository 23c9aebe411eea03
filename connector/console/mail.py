"""Mail written to files: without ``SMTP_HOST`` (the demo), every message billsync sends — portal
links, reminders — is an ``.eml`` file in ``MAIL_DIR``; this page lists them, newest first, and
shows one. With an SMTP server the page says so and lists nothing."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser

from flask import abort, render_template
from flask_babel import lazy_gettext as _l

from connector.console.framework import ConsoleBlueprint, Nav, acting, console_state
from connector.console.users import ACTING_ROLES

blueprint = ConsoleBlueprint("console_mail", __name__, url_prefix="/mail",
                             nav=Nav(_l("Mail"), "console_mail.list_mail", order=90, roles=ACTING_ROLES))

#: The names ``connector.mail.Mailer`` gives the files.
FILE_NAME = re.compile(r"^[0-9]{8}T[0-9]{6,12}-[0-9a-f]{8}\.eml$")
PAGE_SIZE = 100


def _read(path, *, headers_only: bool):
    with path.open("rb") as handle:
        return BytesParser(policy=policy.default).parse(handle, headersonly=headers_only)


@blueprint.get("/")
@acting
def list_mail():
    settings = console_state().settings
    directory = settings.mail_dir
    names = sorted((p.name for p in directory.glob("*.eml") if FILE_NAME.match(p.name)), reverse=True) \
        if directory.is_dir() else []
    rows = []
    for name in names[:PAGE_SIZE]:
        message = _read(directory / name, headers_only=True)
        rows.append((name, message["Date"], message["To"], message["Subject"]))
    return render_template("console/mail/list.html", rows=rows, smtp_host=settings.smtp_host,
                           directory=directory, more=len(names) > PAGE_SIZE)


@blueprint.get("/<name>")
@acting
def show_mail(name: str):
    if not FILE_NAME.match(name):
        abort(404)
    path = console_state().settings.mail_dir / name
    if not path.is_file():
        abort(404)
    message = _read(path, headers_only=False)
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    return render_template("console/mail/show.html", message=message, text=text)
