#!/usr/bin/env bash
# Prints the Python the virtual environment is built from: the distribution's own
# (/usr/bin/python3, or $IVR_DIST_PYTHON) where it is 3.11 or later and has venv, else
# python3 from PATH.
# Debian builds its Python with profile-guided and link-time optimisation; on a Python
# built from source without them (pyenv's default) the service used a fifth more CPU per
# call on the same machine (docs/operations.md, "The interpreter"; bench/interpreter-probes/).
for py in "${IVR_DIST_PYTHON:-/usr/bin/python3}" python3; do
  if command -v "$py" >/dev/null 2>&1 \
      && "$py" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' \
         >/dev/null 2>&1; then
    echo "$py"; exit 0
  fi
done
echo python3  # check-python.sh then says what is missing
