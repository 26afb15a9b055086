"""The `neuroboard` command line: argparse built from the config dataclasses, one module per command group; the
commands parse, call core/, and print. Every core.errors.UserError prints as one line `neuroboard: error: ...`.

  main      the entry point (`neuroboard = core.cli:main`): parser, dispatch, the one-line error handler
  args      config dataclass -> argparse flags (help from each field's docstring, defaults written once)
  progress  tqdm progress bars on stderr
  lens      `neuroboard lens`
  heads     `neuroboard heads`
  interventions  `neuroboard steer`, `patch`, `backpatch`
  serve     `neuroboard serve`: Streamlit in a child process on 127.0.0.1 with XSRF protection on
"""

from core.cli.main import main

__all__ = ["main"]
