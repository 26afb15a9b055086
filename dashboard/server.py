"""The dashboard's server process: start loading the served indexes' models in the background, then run Streamlit
in this same process (so the pages find the models loading or loaded: dashboard.cache.models).

    python -m dashboard.server [streamlit run flags...]    # what `neuroboard serve` starts (core.cli.serve)
"""

from __future__ import annotations

import sys
from pathlib import Path

APP = Path(__file__).resolve().with_name("app.py")


def main(flags: list[str]) -> None:
    from dashboard.cache.models import index_models, start

    start(index_models())
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *flags]
    cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])
