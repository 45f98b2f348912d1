"""`python -m vpo` runs the command line."""

from vpo.cli import main

main()
