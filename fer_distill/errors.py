"""The package's own error class, for mistakes a user can act on that are not bad values.

Bad content is a `ValueError`, a missing input a `FileNotFoundError` (docs/DESIGN.md,
"Conventions"); `UserError` covers the rest, such as a run directory another process is
writing. The binaries print all three as one line (experiments/cli.py).
"""
from __future__ import annotations


class UserError(Exception):
    """An error whose message tells the user what to do; no traceback needed."""
