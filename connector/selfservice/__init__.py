"""The self-service pages (docs/self-service.md): the public pricing page ``/buy`` and the checkout,
in English and French.

``install_selfservice(app)`` adds them to the web process's app after the console
(``connector.wiring.build_app``): they share its session cookie, its CSRF protection (Flask-WTF),
its Flask-Babel (with a catalog of their own, ``connector/selfservice/translations``), its number
and money formats and its stylesheet. Orders are rate limited (``connector.limits``).
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask

HERE = Path(__file__).parent


def install_selfservice(app: Flask) -> None:
    """Register the pages; their French catalog joins the console's (Flask-Babel merges catalogs)."""
    from connector.selfservice.pages import blueprint

    babel = app.extensions["babel"]
    directory = str(HERE / "translations")
    if directory not in babel.translation_directories:
        babel.translation_directories.append(directory)
    app.register_blueprint(blueprint)
