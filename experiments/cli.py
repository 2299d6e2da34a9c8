"""How every binary fails: one line on stderr naming the problem, never a traceback.

Each binary ends with `cli.run(main)` instead of `app.run(main)`. The package's expected
errors (bad input: `ValueError`, a missing or unreadable file: `OSError` such as
`FileNotFoundError`, and `fer_distill.errors.UserError`, e.g. a run directory another process
holds) and absl's `UsageError` print

    train: error: prepared data set /data/x not found (--debug shows the traceback)

and exit 1. `--debug` (or absl's `--verbosity=1`) lets the traceback through. Any other
exception is a bug and keeps its traceback. `--help` exits 0 (absl's own exits 1).
"""
from __future__ import annotations

import os
import sys
from typing import Callable

from absl import app, flags

from fer_distill.errors import UserError

flags.DEFINE_boolean("debug", False, "Show the Python traceback of an error instead of one line.",
                     allow_override=True)

EXPECTED = (UserError, ValueError, OSError, app.UsageError)
HELP_FLAGS = ("help", "?", "helpshort", "helpfull", "helpxml")  # absl's, without dashes
EXIT_ERROR = 1


def one_line(error: BaseException) -> str:
    """The error's message on one line (its own lines joined), or its type if it has none."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return text or type(error).__name__


def guarded(main: Callable, *, program: str | None = None) -> Callable:
    """`main` wrapped so that an expected error becomes one line on stderr and exit 1."""
    def guarded_main(argv):
        try:
            return main(argv)
        except EXPECTED as error:
            values = flags.FLAGS
            if values.is_parsed() and (values["debug"].value or values["verbosity"].value >= 1):
                raise
            name = program or os.path.basename(argv[0] if argv else sys.argv[0]) or "error"
            hint = "--help for usage" if isinstance(error, app.UsageError) else \
                "--debug shows the traceback"
            print(f"{name.removesuffix('.py')}: error: {one_line(error)} ({hint})",
                  file=sys.stderr, flush=True)
            sys.exit(EXIT_ERROR)
    return guarded_main


def run(main: Callable, argv: list[str] | None = None) -> None:
    """`app.run(main)` with `guarded` errors, and `--help` exiting 0."""
    argv = list(sys.argv if argv is None else argv)
    try:
        app.run(guarded(main, program=_program_name(argv)), argv=argv)
    except SystemExit as exit_:
        # absl's help flags print the help and exit 1; asking for help is not a failure.
        if exit_.code == 1 and any(arg.lstrip("-") in HELP_FLAGS for arg in argv[1:]):
            raise SystemExit(0) from None
        raise


def _program_name(argv: list[str]) -> str:
    """`train` for `python -m experiments.train` and for `python experiments/train.py`."""
    main_module = sys.modules.get("__main__")
    spec = getattr(main_module, "__spec__", None)
    if spec is not None and spec.name:
        return spec.name.rsplit(".", 1)[-1]
    return os.path.splitext(os.path.basename(argv[0]))[0] if argv else "error"
