#!/usr/bin/env bash
# Run every test: installs what the tests need (Debian's Chromium for the browser tests, the Python packages),
# makes sure PostgreSQL and Redis answer, checks the code with ruff, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Chromium drives the browser tests; nginx checks the deployment's site file (nginx -t, never started).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium nginx >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium nginx >/dev/null
  fi
fi
# The services the integration tests talk to; started here when installed but not running.
if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if command -v redis-server >/dev/null && ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
fi
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
# The house rules first (ruff.toml): a lint finding fails the run before any test starts.
"$ROOT/.venv/bin/ruff" check --no-cache .
"$ROOT/.venv/bin/ruff" format --check .
exec "$ROOT/.venv/bin/python" -m pytest "$@"
