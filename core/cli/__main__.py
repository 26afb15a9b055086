"""`python -m core.cli` runs the command line (as the `neuroboard` console script does)."""

import sys

from core.cli.main import main

sys.exit(main())
