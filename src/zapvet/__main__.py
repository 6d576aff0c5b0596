"""`python -m zapvet` runs the command line."""

from zapvet.cli import main

main()
