#!/usr/bin/env bash
# The Python of the OTLP receiver that the integration tests and the footprint bench run
# (tests/otlp_receiver): a virtual environment outside the clone, made on first use and kept in
# step with tests/otlp_receiver/requirements.txt. Prints the variable the tests read (eval it):
#
#   eval "$(scripts/otlp-receiver-env.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${POOLWATCH_OTLP_VENV:-$HOME/.cache/poolwatch/venv-otlp}
REQUIREMENTS=tests/otlp_receiver/requirements.txt

PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
    # Debian's python3 comes without venv and pip until python3-venv is installed.
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null && [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    "$PYTHON" -m venv "$VENV" >&2
fi
# pip is quick when everything is installed already; the stamp skips even that.
stamp="$VENV/.requirements"
if ! cmp -s "$REQUIREMENTS" "$stamp"; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
    cp "$REQUIREMENTS" "$stamp"
fi
printf 'export POOLWATCH_OTLP_PYTHON=%q\n' "$VENV/bin/python"
