"""The ``modelcanary`` command. Later issues add ``run`` and ``drill create``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from modelcanary import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelcanary", description=__doc__)
    parser.add_argument("--version", action="version", version=f"modelcanary {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
