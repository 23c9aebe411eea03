#!/usr/bin/env bash
# The Salesforce package's own checks, without an org: the Salesforce CLI converts the project
# (salesforce/) to Metadata API format, and the Lightning components' Jest tests run.
# npm ci runs only when salesforce/package-lock.json changed since the last install (a stamp in
# salesforce/node_modules holds its digest), so a second run starts at once.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROJECT="$ROOT/salesforce"
cd "$PROJECT"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "the Salesforce package checks need Node 20 or newer and npm on PATH" >&2
  exit 1
fi
wanted="$(sha256sum package-lock.json | cut -d' ' -f1)"
stamp="node_modules/.billsync-installed"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  mkdir -p "$ROOT/instance"
  echo "==> npm ci (salesforce/package-lock.json changed)"
  if ! npm ci --no-audit --no-fund >"$ROOT/instance/npm-ci.log" 2>&1; then
    tail -n 30 "$ROOT/instance/npm-ci.log" >&2
    echo "npm ci failed (full log: instance/npm-ci.log)" >&2
    exit 1
  fi
  echo "$wanted" >"$stamp"
fi
export SF_DISABLE_TELEMETRY=true SF_AUTOUPDATE_DISABLE=true SF_SKIP_NEW_VERSION_CHECK=true
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
./node_modules/.bin/sf project convert source --root-dir force-app --output-dir "$out/mdapi"
test -f "$out/mdapi/package.xml"
./node_modules/.bin/sfdx-lwc-jest
