"""The customer portal (docs/self-service.md): a customer opens it with a signed, expiring,
single-use link and sees their subscriptions, invoices and credit notes; changes a quantity,
switches plans or cancels (previewed, then confirmed exactly as previewed, as amendments in the
engine); edits their billing address and VAT number; asks for a new link by e-mail; writes to their
sales rep.

``install_portal(app)`` adds its pages (``connector.portal.pages``) to the web process's app,
after the console: it shares the console's signed session cookie, CSRF protection, languages and
number formats, and adds its own catalog of French messages (``connector/portal/translations``).
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask

HERE = Path(__file__).parent


def install_portal(app: Flask) -> None:
    from connector.portal.links import OPEN_PATH
    from connector.portal.pages import blueprint
    from connector.wiring import SECRET_PATHS

    # The console's Flask-Babel reads its catalogs from every directory listed, merged in order.
    translations = str(HERE / "translations")
    app.config["BABEL_TRANSLATION_DIRECTORIES"] += ";" + translations
    app.extensions["babel"].translation_directories.append(translations)
    app.register_blueprint(blueprint)
    app.extensions.setdefault(SECRET_PATHS, []).append(OPEN_PATH)
