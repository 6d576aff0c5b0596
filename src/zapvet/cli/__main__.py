"""`python -m zapvet.cli` runs the command line, as `python -m zapvet` does."""

from zapvet.cli import main

main()
