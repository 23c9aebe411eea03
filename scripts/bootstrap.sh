# Sourced by scripts/run and scripts/test: make .venv and install billsync into it.
# Safe to run twice: it reinstalls only when pyproject.toml changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
EXTRAS="${1:-}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      PY="$candidate"; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "billsync needs Python 3.11 or newer on PATH (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=".venv/.billsync-installed${EXTRAS:+-$EXTRAS}"
# An install with the test extras also serves scripts/run.
fresh=""
for s in "$stamp" ${EXTRAS:+} $( [ -z "$EXTRAS" ] && echo .venv/.billsync-installed-test ); do
  if [ -f "$s" ] && [ ! pyproject.toml -nt "$s" ]; then fresh=1; fi
done
if [ -z "$fresh" ]; then
  echo "==> installing billsync${EXTRAS:+[$EXTRAS]} into .venv"
  if ! { .venv/bin/python -m pip install --upgrade pip setuptools wheel \
         && .venv/bin/python -m pip install -e ".${EXTRAS:+[$EXTRAS]}"; } >.venv/install.log 2>&1; then
    tail -n 30 .venv/install.log >&2
    echo "billsync: installing into .venv failed (full log: .venv/install.log)" >&2
    exit 1
  fi
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
