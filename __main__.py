"""`python -m edgec ...` runs the `edgec` command line."""
import sys

from .cli import main

sys.exit(main())
