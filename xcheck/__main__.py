"""``python -m xcheck``: the same command line as ``xcheck``."""

from xcheck.cli import main

main()
