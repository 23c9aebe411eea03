"""``python -m connector.cli``: the same as the ``billsync`` command."""

from connector.cli import main

main()
