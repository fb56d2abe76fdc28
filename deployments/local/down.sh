#!/usr/bin/env bash
# Stop the server and worker that deployments/local/up.sh started.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec "${PYTHON:-.venv/bin/python}" -m deployments.local down "$@"
