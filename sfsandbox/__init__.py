"""A local Salesforce-compatible org over HTTPS on loopback.

Used by the demo (scripts/run), the integration and end-to-end tests, the
benchmarks and fault injection. It imports nothing from the rest of billsync
(a test checks), so it behaves like an outside system.

It needs the ``sandbox`` extra (``pip install 'billsync[sandbox]'``): without it,
importing this package raises ``ImportError`` at once, with that line, rather than
failing later inside a command.
"""

from importlib.util import find_spec

INSTALL_HINT = "pip install 'billsync[sandbox]'"
# What the extra adds to billsync's own dependencies (pyproject.toml, [sandbox]).
EXTRA_MODULES = ("trustme",)



def _installed(name: str) -> bool:
    try:
        return find_spec(name) is not None
    except ImportError:
        return False


_missing = [name for name in EXTRA_MODULES if not _installed(name)]
if _missing:
    raise ImportError(f"the local Salesforce sandbox needs {', '.join(_missing)}: {INSTALL_HINT}",
                      name=__name__)
