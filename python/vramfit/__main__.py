"""The ``vramfit`` command: the same program as the cargo-built CLI, run in process."""

import sys

from . import _native


def main() -> None:
    """Runs ``vramfit`` on the command line's arguments and exits with its code."""
    sys.exit(_native.main(["vramfit", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
