"""The root of thunderline's exception hierarchy and the runtime's errors.

Every error thunderline raises derives from :class:`ThunderlineError` and from
the nearest builtin (``LookupError``, ``TimeoutError``, ``ValueError`` ...), and
its message names the pid, name, step or value at fault.
"""

from __future__ import annotations


class ThunderlineError(Exception):
    """Base class of every exception raised by thunderline."""
