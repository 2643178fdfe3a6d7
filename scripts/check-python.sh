#!/usr/bin/env bash
# The service needs Python 3.11 or later with venv.
set -euo pipefail
py=${1:-python3}
if ! command -v "$py" >/dev/null; then
  printf '\nsetup: %s not found\n  fix: apt-get install python3 python3-venv\n\n' "$py" >&2; exit 1
fi
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  printf '\nsetup: %s is %s; ivr needs Python 3.11 or later\n  fix: use Debian 12 or later, or make PYTHON=python3.11\n\n' \
    "$py" "$("$py" -V 2>&1)" >&2; exit 1
fi
