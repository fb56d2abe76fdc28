#!/usr/bin/env bash
# One command to a local Prefect server + process worker with every edulake deployment.
# Same as `python -m deployments.local up`; PYTHON defaults to the project's .venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec "${PYTHON:-.venv/bin/python}" -m deployments.local up "$@"
