"""The dashboard's server process: Streamlit run in this process (`python -m dashboard.server [flags...]`, what
`neuroboard serve` starts: core.cli.serve), so the models loaded in the background (dashboard.cache.models) live in
the process that serves the pages. The served indexes' models start loading after the first page has been sent
(dashboard/app.py): loading earlier would delay the server's start and that first page.
"""

from __future__ import annotations

import sys
from pathlib import Path

APP = Path(__file__).resolve().with_name("app.py")


def main(flags: list[str]) -> None:
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *flags]
    cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])
