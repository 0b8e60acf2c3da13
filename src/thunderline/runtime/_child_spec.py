"""Child specifications and supervisor flags, validated when they are built.

Vocabulary is OTP's: *restart* is permanent / transient / temporary;
*shutdown* is brutal_kill / a timeout in seconds / infinity; *type* is worker
or supervisor; *strategy* is one_for_one / one_for_all / rest_for_one;
*intensity* and *period* bound restarts; *auto_shutdown* is never /
any_significant / all_significant.

A child's ``start`` is an async callable that must create the child, **link it
to the calling supervisor**, and return its pid, or None to say "ignore"
(OTP's ``ignore``). Raising means the start failed; the exception (or, for
:class:`~thunderline.runtime.InitFailedError`, its ``reason``) is the error.
``start_link`` of a :class:`~thunderline.runtime.Server` is such a function.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any, Final, TypeVar

import attrs

from thunderline.runtime._errors import ThunderlineError
from thunderline.runtime._pid import Pid

__all__ = [
    "BRUTAL_KILL",
    "INFINITY",
    "AutoShutdown",
    "BrutalKill",
    "ChildSpec",
    "ChildSpecError",
    "ChildType",
    "Restart",
    "Strategy",
    "SupervisorFlags",
]


class ChildSpecError(ThunderlineError, ValueError):
    """A child spec or supervisor flag is invalid.

    Attributes:
        field: the offending field.
        accepted: what is accepted there.
        received: what was given.
    """

    def __init__(self, field: str, accepted: str, received: object, child: object = None) -> None:
        self.field = field
        self.accepted = accepted
        self.received = received
        self.child = child
        where = f"child {child!r}: " if child is not None else ""
        super().__init__(f"{where}{field} accepts {accepted}; received {received!r}")


class Restart(enum.StrEnum):
    """When a terminated child is restarted."""

    PERMANENT = "permanent"  #: always
    TRANSIENT = "transient"  #: only after an abnormal exit (not normal/shutdown)
    TEMPORARY = "temporary"  #: never; its spec is removed when it ends


class ChildType(enum.StrEnum):
    """Whether the child is a worker or a supervisor (changes the default shutdown)."""

    WORKER = "worker"
    SUPERVISOR = "supervisor"


class Strategy(enum.StrEnum):
    """Which children a supervisor restarts when one terminates."""

    ONE_FOR_ONE = "one_for_one"  #: only the terminated child
    ONE_FOR_ALL = "one_for_all"  #: all children
    REST_FOR_ONE = "rest_for_one"  #: the terminated child and those started after it


class AutoShutdown(enum.StrEnum):
    """When significant children ending by themselves stop the supervisor (OTP 24+)."""

    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


@attrs.frozen(repr=False)
class BrutalKill:
    """Shut the child down with the untrappable ``exit(pid, KILL)``."""

    def __repr__(self) -> str:
        return "BRUTAL_KILL"


BRUTAL_KILL: Final = BrutalKill()
#: Wait for the child to shut down without a time limit.
INFINITY: Final = math.inf


E = TypeVar("E", bound=enum.StrEnum)


def _enum(kind: type[E], field: str, value: Any) -> E:
    try:
        return kind(value)
    except ValueError:
        accepted = " / ".join(member.value for member in kind)
        raise ChildSpecError(field, accepted, value) from None


def _to_args(value: Iterable[Any]) -> tuple[Any, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ChildSpecError("args", "a tuple (or other iterable) of arguments", value)
    return tuple(value)


def _to_restart(value: Any) -> Restart:
    return _enum(Restart, "restart", value)


def _to_type(value: Any) -> ChildType:
    return _enum(ChildType, "type", value)


def _to_strategy(value: Any) -> Strategy:
    return _enum(Strategy, "strategy", value)


def _to_auto_shutdown(value: Any) -> AutoShutdown:
    return _enum(AutoShutdown, "auto_shutdown", value)


def _check_shutdown(value: Any) -> float | BrutalKill:
    if isinstance(value, BrutalKill) or value == "brutal_kill":
        return BRUTAL_KILL
    if value == "infinity":
        return INFINITY
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ChildSpecError(
            "shutdown", "BRUTAL_KILL, a timeout in seconds > 0, or INFINITY", value
        )
    return float(value)


_UNSET: Final[Any] = object()


@attrs.frozen(kw_only=True)
class ChildSpec:
    """How a supervisor starts, restarts and stops one child.

    Attributes:
        id: the child's identifier, unique within its supervisor (any hashable value).
        start: async callable that starts the child linked to the caller and
            returns its pid (or None to be ignored).
        args: positional arguments for ``start``.
        restart: :class:`Restart` (default permanent).
        shutdown: ``BRUTAL_KILL``, seconds > 0, or ``INFINITY``; default 5 s for
            workers and ``INFINITY`` for supervisors.
        type: :class:`ChildType` (default worker).
        significant: with auto_shutdown, this child ending by itself may stop
            the supervisor. A supervisor refuses a significant child when its
            auto_shutdown is never, or when the child is permanent (checked in
            that order, as OTP's ``check_childspec`` does).

    Raises:
        ChildSpecError: any field is invalid.
    """

    id: Hashable
    start: Callable[..., Awaitable[Pid | None]]
    args: tuple[Any, ...] = attrs.field(default=(), converter=_to_args)
    restart: Restart = attrs.field(default=Restart.PERMANENT, converter=_to_restart)
    type: ChildType = attrs.field(default=ChildType.WORKER, converter=_to_type)
    shutdown: float | BrutalKill = attrs.field(default=_UNSET)
    significant: bool = False

    def __attrs_post_init__(self) -> None:
        if not callable(self.start):
            raise ChildSpecError("start", "an async callable", self.start, self.id)
        try:
            hash(self.id)
        except TypeError:
            raise ChildSpecError("id", "a hashable value", self.id) from None
        if self.shutdown is _UNSET:
            default = INFINITY if self.type is ChildType.SUPERVISOR else 5.0
            object.__setattr__(self, "shutdown", default)
        else:
            object.__setattr__(self, "shutdown", _check_shutdown(self.shutdown))
        if not isinstance(self.significant, bool):
            raise ChildSpecError("significant", "True or False", self.significant, self.id)

    def __repr__(self) -> str:
        return (
            f"ChildSpec(id={self.id!r}, start={getattr(self.start, '__qualname__', self.start)}, "
            f"restart={self.restart.value}, shutdown={self.shutdown!r}, type={self.type.value})"
        )


def _check_intensity(instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ChildSpecError("intensity", "an int >= 0", value)


def _check_period(instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ChildSpecError("period", "a number of seconds > 0", value)


@attrs.frozen(kw_only=True)
class SupervisorFlags:
    """A supervisor's strategy, restart intensity and auto_shutdown.

    Defaults are Erlang's: one_for_one, at most 1 restart in 5 seconds, never.
    """

    strategy: Strategy = attrs.field(default=Strategy.ONE_FOR_ONE, converter=_to_strategy)
    intensity: int = attrs.field(default=1, validator=_check_intensity)
    period: float = attrs.field(default=5, validator=_check_period)
    auto_shutdown: AutoShutdown = attrs.field(
        default=AutoShutdown.NEVER, converter=_to_auto_shutdown
    )
