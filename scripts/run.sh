#!/usr/bin/env bash
# Run INcDb in the embedded default: SQLite, diskcache background jobs, local files, the Neurosynth v7 topics
# (built on first start) and the demo data, on http://127.0.0.1:8050 (HOST / PORT change it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" app.py
