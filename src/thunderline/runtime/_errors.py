"""The root of thunderline's exception hierarchy and the runtime's errors.

Every error thunderline raises derives from :class:`ThunderlineError` and from
the nearest builtin (``LookupError``, ``TimeoutError``, ``ValueError`` ...), and
its message names the pid, name, step or value at fault.
"""

from __future__ import annotations


class ThunderlineError(Exception):
    """Base class of every exception raised by thunderline."""


class NotInProcessError(ThunderlineError, RuntimeError):
    """Raised when an operation that needs a current process runs outside one.

    ``receive``, ``link``, ``monitor``, ``trap_exit`` and friends act on behalf of
    the calling process; call them from code running inside a spawned process.
    """

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(
            f"{operation}() must be called from inside a thunderline process "
            "(spawn one with thunderline.spawn or run your code with thunderline.run)"
        )


class NoNodeError(ThunderlineError, RuntimeError):
    """Raised when no node is running in the current context."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(
            f"{operation}() needs a running thunderline node: use "
            "`async with thunderline.open_node():` or thunderline.run(...)"
        )


class NoProcessError(ThunderlineError, LookupError):
    """The target process does not exist (OTP's ``noproc``).

    Attributes:
        target: the pid or name that named no live process.
        operation: what was attempted.
    """

    def __init__(self, target: object, operation: str) -> None:
        self.target = target
        self.operation = operation
        super().__init__(f"{operation}: no process {target!r} (noproc)")


class NameNotRegisteredError(ThunderlineError, LookupError):
    """A registered name was used that no process holds (OTP's ``badarg`` on ``Name ! Msg``)."""

    def __init__(self, name: str, operation: str) -> None:
        self.name = name
        self.operation = operation
        super().__init__(f"{operation}: the name {name!r} is not registered")


class RegistrationError(ThunderlineError, ValueError):
    """Base class of the errors :func:`register` raises (OTP raises ``badarg`` for all of them)."""


class NameTakenError(RegistrationError):
    """The name is already registered to a process."""

    def __init__(self, name: str, holder: object) -> None:
        self.name = name
        self.holder = holder
        super().__init__(f"register: the name {name!r} is already registered to {holder!r}")


class AlreadyNamedError(RegistrationError):
    """The process already has a different registered name."""

    def __init__(self, pid: object, current_name: str, requested: str) -> None:
        self.pid = pid
        self.current_name = current_name
        self.requested = requested
        super().__init__(
            f"register: {pid!r} is already registered as {current_name!r}; "
            f"cannot also register it as {requested!r}"
        )


class InvalidNameError(RegistrationError, TypeError):
    """The name is not a usable registered name (not a non-empty ``str``, or reserved)."""

    def __init__(self, name: object, why: str) -> None:
        self.name = name
        super().__init__(f"invalid registered name {name!r}: {why}")


class InvalidDestinationError(ThunderlineError, TypeError):
    """A send/link/monitor target is neither a :class:`Pid` nor a registered name."""

    def __init__(
        self, target: object, operation: str, accepted: str = "a Pid or a str name"
    ) -> None:
        self.target = target
        self.operation = operation
        super().__init__(
            f"{operation}: expected {accepted}, got {type(target).__name__} {target!r}"
        )


class ForeignReferenceError(ThunderlineError, ValueError):
    """A reference made on another node was given where only the caller's own can be
    (OTP: ``badarg``, e.g. ``erlang:demonitor`` of another node's monitor reference)."""

    def __init__(self, ref: object, operation: str) -> None:
        self.ref = ref
        self.operation = operation
        super().__init__(f"{operation}: {ref!r} was made on another node (badarg)")


class InvalidTimeoutError(ThunderlineError, ValueError):
    """A timeout is negative, NaN or not a number."""

    def __init__(self, timeout: object, operation: str) -> None:
        self.timeout = timeout
        self.operation = operation
        super().__init__(
            f"{operation}: timeout must be None or a number of seconds >= 0, got {timeout!r}"
        )


class ReceiveTimeout(ThunderlineError, TimeoutError):
    """:func:`receive` found no matching message within its timeout (OTP's ``after`` branch)."""

    def __init__(self, pid: object, timeout: float) -> None:
        self.pid = pid
        self.timeout = timeout
        super().__init__(f"{pid!r}: no matching message within {timeout} s")


class WouldBlock(ThunderlineError):
    """:func:`receive_nowait` found no matching message."""


class ReceiveBusyError(ThunderlineError, RuntimeError):
    """Two tasks of one process tried to wait in :func:`receive` at the same time.

    A process is one sequential actor: its mailbox has one reader. Code that
    wants concurrency inside a process should spawn processes (each with its
    own mailbox) instead of tasks that receive.
    """

    def __init__(self, pid: object) -> None:
        self.pid = pid
        super().__init__(
            f"{pid!r}: receive is already waiting in another task of this process; "
            "spawn a process per concurrent receiver instead"
        )


class NodeClosingError(ThunderlineError, RuntimeError):
    """A process was spawned on a node that is shutting down (closed by our side)."""

    def __init__(self, node_id: int, operation: str) -> None:
        self.node_id = node_id
        self.operation = operation
        super().__init__(
            f"{operation}: node {node_id} is shutting down; no new process can be spawned"
        )


class UnsupportedBackendError(ThunderlineError, RuntimeError):
    """thunderline was started under an async library other than asyncio or trio."""

    def __init__(self, library: str) -> None:
        self.library = library
        super().__init__(f"thunderline runs on asyncio or trio, not {library!r}")


class LoopUnavailableError(ThunderlineError, ValueError):
    """The requested event loop cannot run: uvloop is not installed, or was asked for on trio."""

    def __init__(self, loop: str, why: str) -> None:
        self.loop = loop
        self.why = why
        super().__init__(f"event loop {loop!r} is unavailable: {why}")
