"""Import the app and finish its set-up here, as a new web worker would: ``python scripts/check_startup.py``.

The web unit's reload runs this before it signals gunicorn (``deploy/incdb-web.service``): code or settings that
cannot start stop the reload there (the error on stderr, a non-zero exit status), and the running workers go on
serving instead of being replaced by workers that fail to boot, which would stop the whole server.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import app
    from dashboard.startup import finish_dash_setup

    finish_dash_setup(app.server)
    print("INcDb web app imported and set up: ready to reload")


if __name__ == "__main__":
    main()
