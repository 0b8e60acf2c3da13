"""The saga journal: every supervised run, written ahead, in SQLite or PostgreSQL.

::

    journal = open_journal("data/sagas.db")            # or "postgresql://..."
    sup = await start_saga_supervisor(journal=journal, definitions=[checkout])

Format (version :data:`JOURNAL_VERSION`, checked at open; another version is a
:class:`JournalVersionError`, never a guess). Three tables, in SQLite's main
database or in one PostgreSQL schema (default ``thunderline_sagas``):

``journal_meta(key, value)``
    ``version`` = the format version.
``saga_runs``
    one row per correlation id, written when the run starts (so one run per
    correlation id, across crashes): ``saga`` and ``version`` of the
    definition, ``policy`` (its recovery policy), ``inputs`` (JSON),
    ``options`` (JSON: the run's ``timeout``, ``in_flight``,
    ``rollback_timeout``, ``max_undo_attempts``, reused by a recovery),
    ``started_at``; then ``outcome`` (``succeeded``, ``failed``, ``halted``;
    NULL while unfinished), ``rollback`` (``rolled_back``, ``incomplete`` or
    NULL), ``detail`` (the error, one line), ``ended_at``, ``recoveries``
    (how many times a start-up recovered it).
``saga_records``
    the run's history, in ``seq`` order: ``kind`` (``attempt_started``,
    ``attempt_finished``, ``completed``, ``failure``, ``undo_started``,
    ``undo_finished``), ``path`` (``"step"`` or ``"nested/step"``),
    ``attempt``, ``status`` (``ok``, ``error``, ``retry``, ``halt``,
    ``cancelled``), ``value`` (the result of a completed step, JSON, when it
    serializes; ``has_value`` says whether it did), ``detail`` (the error).

Writes are group-committed, in call order (SQLite in WAL mode with
``synchronous=NORMAL``: a commit survives a process crash; PostgreSQL with
its default ``synchronous_commit``). The start of a run is committed before
``start_saga`` returns; after that the run waits for the commit of what it
wrote (:meth:`SagaJournal.sync`) before a completion takes effect (so before
any dependent starts), before its first undo (the ``failure`` record), after
each successful undo, and before its outcome is reported. Every run waiting
at one moment shares one transaction, so concurrent sagas cost one commit
between them. A crash loses only what was not committed yet, so the journal
always reads as the history of a process that died a little earlier.

Values go through a :class:`JournalCodec` (JSON by default: None, bool, int,
finite float, str, and lists, tuples and str-keyed dicts of those; tuples come
back as lists). Inputs that do not encode are refused at start
(:class:`UnjournalableInputError`); a result that does not encode is journaled
without its value (``has_value`` 0).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
import anyio.lowlevel
import attrs

from ._errors import SagaError

if TYPE_CHECKING:
    from ._result import RollbackReport, SagaOutcome
    from ._saga import Saga

__all__ = [
    "JOURNAL_VERSION",
    "JournalBackendError",
    "JournalCodec",
    "JournalNotFoundError",
    "JournalRecord",
    "JournalVersionError",
    "JournaledRun",
    "RunJournal",
    "SagaAlreadyRanError",
    "SagaJournal",
    "SagaJournalError",
    "UnjournalableInputError",
    "open_journal",
]

JOURNAL_VERSION: Final = 1
"""The journal format version this code reads and writes."""

DEFAULT_SCHEMA: Final = "thunderline_sagas"
DEFAULT_FILE: Final = "sagas.db"
_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_DETAIL_MAX = 500


# ---------------------------------------------------------------------- errors


class SagaJournalError(SagaError):
    """Base class of the saga journal's errors."""


class JournalNotFoundError(SagaJournalError):
    """There is no journal at the location (and it was not to be created).

    Attributes:
        location: The file or (redacted) URL and schema.
    """

    def __init__(self, location: str, detail: str) -> None:
        self.location = location
        super().__init__(f"saga journal {location}: {detail}")


class JournalVersionError(SagaJournalError):
    """The journal was written in another format version.

    Attributes:
        location: The file or (redacted) URL and schema.
        found: The version in the journal.
        expected: :data:`JOURNAL_VERSION`.
    """

    def __init__(self, location: str, found: object, expected: int) -> None:
        self.location = location
        self.found = found
        self.expected = expected
        super().__init__(
            f"saga journal {location} has format version {found!r}; this thunderline reads "
            f"version {expected} only"
        )


class JournalBackendError(SagaJournalError):
    """The database failed (cannot open, connect, read or write).

    Attributes:
        location: The file or (redacted) URL and schema.
        operation: What was being done.
        detail: The database's message (one line).
    """

    def __init__(self, location: str, operation: str, detail: str) -> None:
        self.location = location
        self.operation = operation
        self.detail = detail
        super().__init__(f"saga journal {location}: {operation} failed: {detail}")


class UnjournalableInputError(SagaJournalError, TypeError):
    """A saga input cannot be journaled (the codec cannot encode it); nothing was started.

    Attributes:
        saga: The saga's name.
        input: The input's name.
        value_type: The value's type name.
        detail: Why it does not encode.
    """

    def __init__(self, saga: str, input: str, value: object, detail: str) -> None:
        self.saga = saga
        self.input = input
        self.value_type = type(value).__name__
        self.detail = detail
        super().__init__(
            f"saga {saga!r}: input {input!r} ({self.value_type}) cannot be journaled: {detail}"
        )


class SagaAlreadyRanError(SagaJournalError):
    """The journal already has a run under this correlation id (one run per id).

    Attributes:
        correlation_id: The id.
        outcome: The journaled outcome (``"succeeded"``, ``"failed"``,
            ``"halted"``), or None if that run is unfinished.
    """

    def __init__(self, correlation_id: str, outcome: str | None) -> None:
        self.correlation_id = correlation_id
        self.outcome = outcome
        state = f"ended ({outcome})" if outcome is not None else "is unfinished"
        super().__init__(
            f"saga {correlation_id!r} already has a journaled run, which {state}: "
            "one run per correlation id"
        )


# --------------------------------------------------------------------- records


@attrs.frozen
class JournaledRun:
    """One row of ``saga_runs`` (see the module docstring)."""

    correlation_id: str
    saga: str
    version: int
    policy: str
    inputs: str
    options: str
    started_at: float
    outcome: str | None
    rollback: str | None
    detail: str | None
    ended_at: float | None
    recoveries: int


@attrs.frozen
class JournalRecord:
    """One row of ``saga_records`` (see the module docstring)."""

    seq: int
    correlation_id: str
    kind: str
    path: str
    attempt: int
    status: str | None
    value: str | None
    has_value: bool
    detail: str | None
    at: float


class JournalCodec:
    """How values are journaled: JSON by default; subclass to journal your own types.

    ``encode`` raises ``TypeError`` or ``ValueError`` for a value it cannot
    encode; ``decode(encode(v))`` must give a value the steps accept as ``v``.
    """

    def encode(self, value: Any) -> str:
        """The value as text."""
        return json.dumps(
            value, allow_nan=False, sort_keys=True, separators=(",", ":"), default=self.default
        )

    def decode(self, text: str) -> Any:
        """The value back from its text."""
        return json.loads(text)

    def default(self, value: Any) -> Any:
        """A JSON-encodable stand-in for ``value``; the default accepts nothing else."""
        raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _describe(error: BaseException | None) -> str | None:
    if error is None:
        return None
    text = f"{type(error).__name__}: {_one_line(error)}"
    return text[:_DETAIL_MAX]


class RunJournal(Protocol):
    """The journal of one top-level run, as the executor writes it.

    ``path`` is the step's path from the root run (``"step"`` or
    ``"nested/step"``); nested runs write to their root's journal. A write
    appends the record; :meth:`sync` returns once everything written so far
    is committed (the executor syncs before a completion takes effect, before
    the first undo, after each successful undo and before the outcome is
    reported).
    """

    async def sync(self) -> None:
        """Return once every record written so far is committed."""

    def attempt_started(self, path: str, attempt: int) -> None:
        """Before an attempt of ``run`` (or of a nested saga) begins."""

    def attempt_finished(
        self, path: str, attempt: int, outcome: str, error: BaseException | None, value: Any
    ) -> None:
        """After it ended; ``value`` is the result when ``outcome`` is ``"ok"``."""

    def completed(self, path: str, value: Any) -> None:
        """The step completed through ``compensate`` returning ``Continue(value)``."""

    def failure(self, step: str | None, error: BaseException) -> None:
        """The run failed (it rolls back next)."""

    def undo_started(self, path: str, attempt: int) -> None:
        """Before an undo call."""

    def undo_finished(
        self, path: str, attempt: int, outcome: str, error: BaseException | None
    ) -> None:
        """After it ended."""

    def finished(
        self,
        outcome: SagaOutcome | None,
        error: BaseException | None,
        report: RollbackReport | None,
    ) -> None:
        """The run's outcome (or the error that escaped it, with its rollback report)."""


# ----------------------------------------------------------------- the journal


class SagaJournal:
    """A saga journal in SQLite or PostgreSQL. Open one with :func:`open_journal`.

    One connection, used from the event loop's thread: writes are short
    synchronous transactions (a saga step waits for its record, never for
    another step's work).

    Attributes:
        location: The file, or the redacted URL and schema.
        codec: How values are journaled.
    """

    def __init__(
        self,
        location: str,
        connection: Any,
        *,
        postgres: bool,
        schema: str,
        codec: JournalCodec,
    ) -> None:
        self.location = location
        self.codec = codec
        self._conn = connection
        self._postgres = postgres
        prefix = f'"{schema}".' if postgres else ""
        self._runs = prefix + "saga_runs"
        self._records = prefix + "saga_records"
        self._meta = prefix + "journal_meta"
        # Appended, not yet committed: (statement, parameters), in order.
        self._held: list[tuple[str, tuple[Any, ...]]] = []
        self._appended = 0
        self._committed = 0
        self._committing: anyio.Event | None = None  # a sync() commit is under way
        self._broken: JournalBackendError | None = None
        self._insert = self._sql(
            f"INSERT INTO {self._records} (correlation_id, kind, path, attempt, status, value, "
            "has_value, detail, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._closed = False

    # ------------------------------------------------------------ plumbing

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self._postgres else statement

    def _execute(self, operation: str, statement: str, params: Sequence[Any] = ()) -> Any:
        if self._closed:
            raise JournalBackendError(self.location, operation, "the journal is closed")
        try:
            return self._conn.execute(self._sql(statement), tuple(params))
        except SagaJournalError:
            raise
        except Exception as exc:  # noqa: BLE001 - every driver error, named and one line
            raise JournalBackendError(self.location, operation, _one_line(exc)) from None

    def _rows(self, operation: str, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        cursor = self._execute(operation, statement, params)
        try:
            return list(cursor.fetchall())
        except Exception as exc:  # noqa: BLE001 - every driver error, named and one line
            raise JournalBackendError(self.location, operation, _one_line(exc)) from None

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._closed:
            return
        try:
            self.flush("close")
        except SagaJournalError:
            pass  # the connection is broken; held records die with it, as in a crash
        self._closed = True
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass

    def __enter__(self) -> SagaJournal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _initialise(self) -> None:
        if self._postgres:
            serial = "BIGSERIAL PRIMARY KEY"
            self._execute("create", f"CREATE SCHEMA IF NOT EXISTS {self._runs.split('.')[0]}")
        else:
            serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
        self._execute(
            "create",
            f"CREATE TABLE IF NOT EXISTS {self._meta} (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        )
        self._execute(
            "create",
            f"CREATE TABLE IF NOT EXISTS {self._runs} ("
            "correlation_id TEXT PRIMARY KEY, saga TEXT NOT NULL, version INTEGER NOT NULL, "
            "policy TEXT NOT NULL, inputs TEXT NOT NULL, options TEXT NOT NULL, "
            "started_at DOUBLE PRECISION NOT NULL, "
            "outcome TEXT, rollback TEXT, detail TEXT, ended_at DOUBLE PRECISION, "
            "recoveries INTEGER NOT NULL DEFAULT 0)",
        )
        self._execute(
            "create",
            f"CREATE TABLE IF NOT EXISTS {self._records} ("
            f"seq {serial}, correlation_id TEXT NOT NULL, kind TEXT NOT NULL, "
            "path TEXT NOT NULL, attempt INTEGER NOT NULL, status TEXT, value TEXT, "
            "has_value INTEGER NOT NULL, detail TEXT, at DOUBLE PRECISION NOT NULL)",
        )
        index = "saga_records_by_run"
        self._execute(
            "create",
            f"CREATE INDEX IF NOT EXISTS {index} ON {self._records} (correlation_id, seq)",
        )
        self._execute(
            "create",
            f"INSERT INTO {self._meta} (key, value) VALUES ('version', ?) "
            "ON CONFLICT (key) DO NOTHING",
            (str(JOURNAL_VERSION),),
        )

    def _check_version(self) -> None:
        rows = self._rows("read version", f"SELECT value FROM {self._meta} WHERE key = 'version'")
        found: object = rows[0][0] if rows else None
        if found != str(JOURNAL_VERSION):
            try:
                found = int(str(found))
            except ValueError:
                pass
            raise JournalVersionError(self.location, found, JOURNAL_VERSION)

    # --------------------------------------------------------------- writing

    def encode_inputs(self, saga: Saga, inputs: Mapping[str, Any]) -> str:
        """The inputs as journal text.

        Raises:
            UnjournalableInputError: naming the first input that does not encode.
        """
        for name in sorted(inputs):
            try:
                self.codec.encode(inputs[name])
            except (TypeError, ValueError) as exc:
                raise UnjournalableInputError(saga.name, name, inputs[name], str(exc)) from None
        try:
            return self.codec.encode(dict(inputs))
        except (TypeError, ValueError) as exc:  # e.g. a codec that rejects the mapping
            raise UnjournalableInputError(saga.name, "*", inputs, str(exc)) from None

    def begin(
        self,
        saga: Saga,
        inputs: Mapping[str, Any],
        correlation_id: str,
        options: Mapping[str, Any] | None = None,
    ) -> RunJournal:
        """Journal the start of a run and return its :class:`RunJournal`.

        ``options`` are the run's options (JSON values), given back to a recovery.

        Raises:
            UnjournalableInputError: an input does not encode.
            SagaAlreadyRanError: the journal has a run under ``correlation_id``.
        """
        text = self.encode_inputs(saga, inputs)
        cursor = self._execute(
            "start a run",
            f"INSERT INTO {self._runs} (correlation_id, saga, version, policy, inputs, options, "
            "started_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (correlation_id) DO NOTHING",
            (
                correlation_id,
                saga.name,
                saga.version,
                saga.recovery,
                text,
                json.dumps(dict(options or {}), sort_keys=True),
                time.time(),
            ),
        )
        if cursor.rowcount != 1:
            existing = self.run(correlation_id)
            raise SagaAlreadyRanError(
                correlation_id, existing.outcome if existing is not None else None
            )
        return _RunJournal(self, correlation_id)

    def recover(self, correlation_id: str) -> RunJournal:
        """The :class:`RunJournal` of an unfinished run being recovered (counts the recovery)."""
        self._execute(
            "count a recovery",
            f"UPDATE {self._runs} SET recoveries = recoveries + 1 WHERE correlation_id = ?",
            (correlation_id,),
        )
        return _RunJournal(self, correlation_id)

    def _record(
        self,
        correlation_id: str,
        kind: str,
        path: str,
        attempt: int,
        status: str | None = None,
        value: str | None = None,
        has_value: bool = False,
        detail: str | None = None,
    ) -> None:
        """Append a record to the held ones (committed by :meth:`sync` or :meth:`flush`)."""
        self._hold(
            self._insert,
            (
                correlation_id,
                kind,
                path,
                attempt,
                status,
                value,
                int(has_value),
                detail,
                time.time(),
            ),
        )

    def _finish(
        self, correlation_id: str, outcome: str, rollback: str | None, detail: str | None
    ) -> None:
        self._hold(
            self._sql(
                f"UPDATE {self._runs} SET outcome = ?, rollback = ?, detail = ?, ended_at = ? "
                "WHERE correlation_id = ? AND outcome IS NULL"
            ),
            (outcome, rollback, detail, time.time(), correlation_id),
        )

    def _hold(self, statement: str, params: tuple[Any, ...]) -> None:
        if self._broken is not None:
            raise self._broken
        self._held.append((statement, params))
        self._appended += 1

    async def sync(self) -> None:
        """Return once everything appended so far is committed (group commit).

        The first caller to find uncommitted records commits them, after one
        checkpoint so that every task ready to run adds its records to the same
        transaction; callers arriving meanwhile wait for that commit, then
        commit what was added since, in order.

        Raises:
            JournalBackendError: the database failed; the journal is then
                broken and every later write raises the same error (what was
                not committed is lost, as in a crash).
        """
        target = self._appended
        while self._committed < target:
            if self._broken is not None:
                raise self._broken
            if self._committing is not None:
                await self._committing.wait()
                continue
            done = self._committing = anyio.Event()
            try:
                await anyio.lowlevel.checkpoint()
                self.flush()
            finally:
                self._committing = None
                done.set()

    def flush(self, operation: str = "commit records") -> None:
        """Commit the held records now, in one transaction."""
        if self._broken is not None:
            raise self._broken
        items, self._held = self._held, []
        if not items:
            return
        try:
            if self._closed:
                raise SagaJournalError("the journal is closed")
            if self._postgres:
                with self._conn.transaction(), self._conn.cursor() as cursor:
                    for statement, params in items:
                        cursor.execute(statement, params)
            else:
                self._conn.execute("BEGIN")
                try:
                    for statement, params in items:
                        self._conn.execute(statement, params)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - every driver error, named and one line
            self._broken = JournalBackendError(self.location, operation, _one_line(exc))
            raise self._broken from None
        self._committed += len(items)

    # --------------------------------------------------------------- reading

    _RUN_COLUMNS = (
        "correlation_id, saga, version, policy, inputs, options, started_at, outcome, rollback, "
        "detail, ended_at, recoveries"
    )

    def run(self, correlation_id: str) -> JournaledRun | None:
        """The run journaled under ``correlation_id``, if any."""
        self.flush()
        rows = self._rows(
            "read a run",
            f"SELECT {self._RUN_COLUMNS} FROM {self._runs} WHERE correlation_id = ?",
            (correlation_id,),
        )
        return JournaledRun(*rows[0]) if rows else None

    def runs(self, *, unfinished_only: bool = False) -> list[JournaledRun]:
        """Every journaled run (or only those without an outcome), oldest first."""
        self.flush()
        where = " WHERE outcome IS NULL" if unfinished_only else ""
        rows = self._rows(
            "list runs",
            f"SELECT {self._RUN_COLUMNS} FROM {self._runs}{where} "
            "ORDER BY started_at, correlation_id",
        )
        return [JournaledRun(*row) for row in rows]

    def records(self, correlation_id: str) -> list[JournalRecord]:
        """The history of one run, in journal order."""
        self.flush()
        rows = self._rows(
            "read records",
            "SELECT seq, correlation_id, kind, path, attempt, status, value, has_value, detail, "
            f"at FROM {self._records} WHERE correlation_id = ? ORDER BY seq",
            (correlation_id,),
        )
        return [
            JournalRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9])
            for r in rows
        ]

    def __iter__(self) -> Iterator[JournaledRun]:
        return iter(self.runs())


class _RunJournal:
    """:class:`RunJournal` of one run of a :class:`SagaJournal`."""

    __slots__ = ("_cid", "_journal")

    def __init__(self, journal: SagaJournal, correlation_id: str) -> None:
        self._journal = journal
        self._cid = correlation_id

    async def sync(self) -> None:
        await self._journal.sync()

    def attempt_started(self, path: str, attempt: int) -> None:
        self._journal._record(self._cid, "attempt_started", path, attempt)

    def attempt_finished(
        self, path: str, attempt: int, outcome: str, error: BaseException | None, value: Any
    ) -> None:
        if outcome == "ok":
            text, ok = self._encode(value)
            self._journal._record(
                self._cid, "attempt_finished", path, attempt, outcome, text, ok, None
            )
        else:
            self._journal._record(
                self._cid,
                "attempt_finished",
                path,
                attempt,
                outcome,
                detail=_describe(error),
            )

    def completed(self, path: str, value: Any) -> None:
        text, ok = self._encode(value)
        self._journal._record(self._cid, "completed", path, 0, "ok", text, ok)

    def failure(self, step: str | None, error: BaseException) -> None:
        self._journal._record(self._cid, "failure", step or "", 0, "error", detail=_describe(error))

    def undo_started(self, path: str, attempt: int) -> None:
        self._journal._record(self._cid, "undo_started", path, attempt)

    def undo_finished(
        self, path: str, attempt: int, outcome: str, error: BaseException | None
    ) -> None:
        self._journal._record(
            self._cid,
            "undo_finished",
            path,
            attempt,
            outcome,
            detail=_describe(error),
        )

    def finished(
        self,
        outcome: SagaOutcome | None,
        error: BaseException | None,
        report: RollbackReport | None,
    ) -> None:
        from ._result import SagaFailed, SagaHalted, SagaSucceeded

        if isinstance(outcome, SagaSucceeded):
            self._journal._finish(self._cid, "succeeded", None, None)
        elif isinstance(outcome, SagaHalted):
            self._journal._finish(self._cid, "halted", None, _describe(Exception(outcome.reason)))
        elif isinstance(outcome, SagaFailed):
            rollback = outcome.rollback.status.value
            self._journal._finish(self._cid, "failed", rollback, _describe(outcome.error))
        else:
            status = report.status.value if report is not None else None
            self._journal._finish(self._cid, "failed", status, _describe(error))

    def _encode(self, value: Any) -> tuple[str | None, bool]:
        try:
            return self._journal.codec.encode(value), True
        except (TypeError, ValueError):
            return None, False


# ---------------------------------------------------------------------- open


def redact_url(url: str) -> str:
    """``url`` without its password."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


def _is_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def open_journal(
    target: str | os.PathLike[str],
    *,
    schema: str = DEFAULT_SCHEMA,
    create: bool = True,
    read_only: bool = False,
    codec: JournalCodec | None = None,
) -> SagaJournal:
    """Open (or create) the saga journal at ``target``.

    Args:
        target: A SQLite file (a directory means ``<dir>/sagas.db``) or a
            ``postgresql://`` URL.
        schema: The PostgreSQL schema holding the tables.
        create: Create the journal if there is none (never when ``read_only``).
        read_only: Open for reading only (the operator's view).
        codec: How values are journaled (default: JSON).

    Raises:
        JournalNotFoundError: there is no journal and it is not to be created.
        JournalVersionError: the journal has another format version.
        JournalBackendError: the database cannot be opened or read.
        SagaJournalError: ``schema`` is not a lowercase SQL identifier.
    """
    codec = codec if codec is not None else JournalCodec()
    if isinstance(target, str) and _is_url(target):
        if not _SCHEMA_RE.fullmatch(schema):
            raise SagaJournalError(
                f"saga journal schema must be a lowercase SQL identifier, got {schema!r}"
            )
        return _open_postgres(target, schema, create and not read_only, codec)
    path = Path(target)
    if path.is_dir():
        path = path / DEFAULT_FILE
    return _open_sqlite(path, create and not read_only, read_only, codec)


def _open_sqlite(path: Path, create: bool, read_only: bool, codec: JournalCodec) -> SagaJournal:
    location = str(path)
    if not path.exists() and not create:
        raise JournalNotFoundError(location, "no such file")
    try:
        if read_only:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
    except (sqlite3.Error, OSError) as exc:
        raise JournalBackendError(location, "open", _one_line(exc)) from None
    journal = SagaJournal(location, conn, postgres=False, schema="", codec=codec)
    try:
        tables = journal._rows("read tables", "SELECT name FROM sqlite_master WHERE type = 'table'")
        if "journal_meta" not in {t[0] for t in tables}:
            if not create:
                raise JournalNotFoundError(location, "not a saga journal (no journal_meta table)")
            journal._initialise()
        journal._check_version()
    except BaseException:
        journal.close()
        raise
    return journal


def _open_postgres(url: str, schema: str, create: bool, codec: JournalCodec) -> SagaJournal:
    location = f"{redact_url(url)} (schema {schema})"
    try:
        import psycopg
    except ImportError:
        raise JournalBackendError(
            location, "connect", "psycopg is not installed (pip install 'thunderline[postgres]')"
        ) from None
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except Exception as exc:  # noqa: BLE001 - every driver error, named and one line
        raise JournalBackendError(location, "connect", _one_line(exc)) from None
    journal = SagaJournal(location, conn, postgres=True, schema=schema, codec=codec)
    try:
        rows = journal._rows(
            "read tables",
            "SELECT 1 FROM information_schema.tables WHERE table_schema = ? "
            "AND table_name = 'journal_meta'",
            (schema,),
        )
        if not rows:
            if not create:
                raise JournalNotFoundError(location, "no saga journal tables in the schema")
            journal._initialise()
        journal._check_version()
    except BaseException:
        journal.close()
        raise
    return journal
