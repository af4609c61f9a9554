"""User errors of the project's command lines: one paragraph that says what is wrong and how to fix
it, exit status 2, and no traceback unless ``--debug`` is given.

    from reproductions.errors import UserError, run_cli

    def main(argv=None):
        return run_cli(_main, argv)      # _main raises UserError("... Fix: ...") on bad input

Shared by the CPU experiments (:mod:`reproductions.smallscale.experiment`) and :mod:`reproductions.run_all`;
the engine's command lines can raise and catch the same class.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["EXIT_USER_ERROR", "DataError", "UserError", "run_cli"]

EXIT_USER_ERROR = 2
"""The exit status of a user error (argparse's, too)."""

T = TypeVar("T")


class UserError(Exception):
    """An error the user can fix: its message says what is wrong and what to do instead."""


class DataError(UserError, RuntimeError):
    """Missing or malformed data (a dataset folder, an IDX, image, mask or annotation file): the message
    names the path and the fix. The one class every data reader raises."""


def run_cli(main: Callable[[Sequence[str] | None], T], argv: Sequence[str] | None = None) -> T:
    """Call ``main(argv)``; on :class:`UserError`, print ``error: <message>`` (one wrapped paragraph) to
    stderr and exit with status 2, without a traceback. With ``--debug`` in ``argv`` (removed before
    ``main`` sees it) the error propagates with its traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        return main(args)
    except UserError as err:
        if debug:
            raise
        text = " ".join(str(err).split())
        # paths and flags stay whole (copy-pasteable): no breaks inside words or at their hyphens
        print(
            textwrap.fill(f"error: {text}", width=100, break_long_words=False, break_on_hyphens=False),
            file=sys.stderr,
        )
        print("(run with --debug for the traceback)", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
