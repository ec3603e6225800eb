#!/usr/bin/env bash
# Mutation testing of the core modules (mutmut 3), low priority, one worker; not part of CI.
# Usage: tools/mutation.sh [module.py ...]   (default: [tool.mutmut] only_mutate in pyproject.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
exec nice -n 19 "${PYTHON:-.venv/bin/python}" tools/mutation.py "$@"
