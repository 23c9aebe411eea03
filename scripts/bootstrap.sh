# Sourced by scripts/run and scripts/test: make .venv and install billsync into it.
# Safe to run twice: it reinstalls only when pyproject.toml or the extras asked for changed.
# Extras: none (production), sandbox (scripts/run: the demo's local org), test (scripts/test).
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
# The stamp of an install holds a digest of pyproject.toml: any change to the dependencies
# or the extras reinstalls. An install with more extras serves one with fewer: the test
# extra includes the sandbox extra, and both include the plain install.
case "$EXTRAS" in
  "") serving=("" sandbox test) ;;
  sandbox) serving=(sandbox test) ;;
  *) serving=("$EXTRAS") ;;
esac
wanted="$(.venv/bin/python -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' pyproject.toml)"
stamp=".venv/.billsync-installed${EXTRAS:+-$EXTRAS}"
fresh=""
for extras in "${serving[@]}"; do
  s=".venv/.billsync-installed${extras:+-$extras}"
  if [ -f "$s" ] && [ "$(cat "$s")" = "$wanted" ]; then fresh=1; fi
done
if [ -z "$fresh" ]; then
  echo "==> installing billsync${EXTRAS:+[$EXTRAS]} into .venv"
  if ! { .venv/bin/python -m pip install --upgrade pip setuptools wheel \
         && .venv/bin/python -m pip install -e ".${EXTRAS:+[$EXTRAS]}"; } >.venv/install.log 2>&1; then
    tail -n 30 .venv/install.log >&2
    echo "billsync: installing into .venv failed (full log: .venv/install.log)" >&2
    exit 1
  fi
  echo "$wanted" >"$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
