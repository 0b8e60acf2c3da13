"""The ``thunderline`` command line.

Each subcommand lives in its own underscore module and registers itself with
:func:`main`'s parser. Errors are reported as one line on stderr with a
non-zero exit status, never as a traceback.
"""

from __future__ import annotations

from thunderline.cli._main import main

__all__ = ["main"]

main.__module__ = __name__
