"""``python -m e2e.modelserver``: one model-server process (see server.py for why)."""

import sys

from e2e.modelserver.server import main

if __name__ == "__main__":
    sys.exit(main())
