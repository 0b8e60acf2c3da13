"""The embedded SQLite ledger backend (stdlib ``sqlite3``).

Use :func:`thunderline.domains._ledger._core.open_ledger` with a file path::

    >>> import tempfile, pathlib
    >>> from thunderline.domains._ledger._core import open_ledger
    >>> ledger = open_ledger(pathlib.Path(tempfile.mkdtemp()) / "ledger.db")
    >>> ledger.head().seq
    0
    >>> ledger.close()

Storage: WAL journal, ``synchronous=FULL`` (a committed batch survives power
loss), one ``BEGIN IMMEDIATE`` transaction per batch (the write lock is taken
before the tail is read, so concurrent writers, even in other processes, chain
correctly). Tables ``ledger_records`` and ``ledger_meta``; ``BEFORE UPDATE`` and
``BEFORE DELETE`` triggers on both abort with ``ledger is append-only``. SQLite
has no TRUNCATE statement (``DELETE FROM`` without ``WHERE`` fires the
trigger). Anyone who can write the file can still drop the triggers: that is what
the hashes, signatures and saved heads are for.

Thread safety: one connection (``check_same_thread=False``) used under the
backend's lock, so a backend may be shared by threads; :class:`AsyncLedger`
additionally serializes calls through a capacity limiter of 1.
"""

from __future__ import annotations

import datetime as _dt
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from thunderline.domains._ledger._core import (
    COLUMNS,
    LEDGER_VERSION,
    LedgerBackend,
    LedgerBackendError,
    LedgerNotFoundError,
    LedgerRecord,
    genesis_record,
    load_signing_key,
    record_from_row,
)
from thunderline.domains._ledger._signing import (
    LedgerSigningKey,
    public_key_pem,
)

__all__ = ["SCHEMA", "SqliteLedger"]

_COLUMN_LIST = ", ".join(COLUMNS)
_CHUNK = 1000

#: The DDL of a new ledger.
SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_records (
    seq INTEGER PRIMARY KEY NOT NULL CHECK (seq >= 0),
    event_id TEXT NOT NULL UNIQUE,
    canonical BLOB NOT NULL,
    prev_hash TEXT NOT NULL,
    event_hash TEXT NOT NULL,
    event_signature BLOB NOT NULL,
    key_id TEXT NOT NULL,
    ledger_version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_records_event_hash ON ledger_records (event_hash);
CREATE TRIGGER IF NOT EXISTS ledger_records_no_update BEFORE UPDATE ON ledger_records
BEGIN SELECT RAISE(ABORT, 'ledger is append-only: UPDATE on ledger_records rejected'); END;
CREATE TRIGGER IF NOT EXISTS ledger_records_no_delete BEFORE DELETE ON ledger_records
BEGIN SELECT RAISE(ABORT, 'ledger is append-only: DELETE on ledger_records rejected'); END;
CREATE TRIGGER IF NOT EXISTS ledger_meta_no_update BEFORE UPDATE ON ledger_meta
BEGIN SELECT RAISE(ABORT, 'ledger is append-only: UPDATE on ledger_meta rejected'); END;
CREATE TRIGGER IF NOT EXISTS ledger_meta_no_delete BEFORE DELETE ON ledger_meta
BEGIN SELECT RAISE(ABORT, 'ledger is append-only: DELETE on ledger_meta rejected'); END;
"""


class SqliteLedger(LedgerBackend):
    """A ledger in one SQLite file. Open it with :func:`open_ledger`.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        location: str,
        connection: sqlite3.Connection,
        signing_key: LedgerSigningKey | None,
    ) -> None:
        """Wrap an open connection to an initialised ledger (use :meth:`open`)."""
        super().__init__(location, signing_key)
        self._conn = connection
        self._adopt_public_key(signing_key)

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        data_dir: str | Path | None,
        create: bool,
        read_only: bool,
    ) -> SqliteLedger:
        """Open the ledger at ``path``; see :func:`open_ledger` for the options.

        .. versionadded:: 0.1
        """
        location = str(path)
        if path.is_dir():
            raise LedgerNotFoundError(location, "is a directory, not a SQLite file")
        exists = path.exists()
        if not exists and (read_only or not create):
            raise LedgerNotFoundError(location, "no such file")
        try:
            if read_only:
                conn = sqlite3.connect(
                    path.resolve().as_uri() + "?mode=ro",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                if not exists:  # owner-only from the start; -wal and -shm inherit the mode
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError) as exc:
            raise LedgerBackendError(location, "open", str(exc)) from None
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            try:
                has_tables = (
                    conn.execute(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                        "AND name IN ('ledger_meta', 'ledger_records')"
                    ).fetchone()[0]
                    == 2
                )
            except sqlite3.DatabaseError as exc:
                if "not a database" in str(exc):
                    raise LedgerNotFoundError(
                        location, f"not a thunderline ledger ({exc})"
                    ) from None
                raise
            if not has_tables and (read_only or not create):
                raise LedgerNotFoundError(location, "not a thunderline ledger (no ledger tables)")
            initialised = has_tables and bool(
                conn.execute(
                    "SELECT count(*) FROM ledger_meta WHERE key = 'public_key_pem'"
                ).fetchone()[0]
            )
            if not initialised and (read_only or not create):
                raise LedgerNotFoundError(location, "the ledger was never initialised")
            # the key is looked for only once the file is known to be a ledger, and
            # created (with its public key file) only for a new ledger
            key = load_signing_key(data_dir, create=create and not initialised, read_only=read_only)
            if not read_only:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
            if not initialised:
                assert key is not None
                cls._initialise(conn, key)
            ledger = cls(location, conn, key)
            if not read_only:
                ledger._check_before_append()
            return ledger
        except sqlite3.Error as exc:
            conn.close()
            raise LedgerBackendError(location, "open", str(exc)) from None
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _initialise(conn: sqlite3.Connection, key: LedgerSigningKey) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            present = conn.execute("SELECT count(*) FROM ledger_records").fetchone()[0]
            if not present:  # nobody initialised it while we waited for the lock
                meta = {
                    "ledger_version": str(LEDGER_VERSION),
                    "public_key_pem": public_key_pem(key.public_key),
                    "key_id": key.key_id,
                    "created_at": _dt.datetime.now(_dt.UTC).isoformat(),
                }
                conn.executemany(
                    "INSERT INTO ledger_meta (key, value) VALUES (?, ?)", sorted(meta.items())
                )
                genesis = genesis_record(key)
                conn.execute(
                    f"INSERT INTO ledger_records ({_COLUMN_LIST}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    genesis.row(),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM ledger_records").fetchone()[0])

    def _integrity_problem(self, *, quick: bool) -> str | None:
        pragma = "quick_check" if quick else "integrity_check"
        try:
            rows = self._conn.execute(f"PRAGMA {pragma}(5)").fetchall()
        except sqlite3.DatabaseError as exc:
            return str(exc)
        messages = [str(row[0]) for row in rows]
        if messages == ["ok"]:
            return None
        return "; ".join(messages)

    def _meta(self) -> dict[str, str]:
        rows = self._conn.execute("SELECT key, value FROM ledger_meta").fetchall()
        return {str(k): str(v) for k, v in rows}

    def _append(
        self, key: LedgerSigningKey, prepared: Sequence[tuple[str, bytes]]
    ) -> list[LedgerRecord]:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise LedgerBackendError(
                self.location, "begin the append transaction", str(exc)
            ) from None
        try:
            tail = self._tail()
            assert tail is not None
            ids = sorted({event_id for event_id, _ in prepared})
            existing: dict[str, LedgerRecord] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                for row in conn.execute(
                    f"SELECT {_COLUMN_LIST} FROM ledger_records WHERE event_id IN ({marks})",
                    chunk,
                ):
                    record = record_from_row(row)
                    existing[record.event_id] = record
            new, result = self._build_batch(key, tail, prepared, existing)
            conn.executemany(
                f"INSERT INTO ledger_records ({_COLUMN_LIST}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [record.row() for record in new],
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise LedgerBackendError(self.location, "append", str(exc)) from None
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return result

    def _tail(self) -> LedgerRecord | None:
        row = self._conn.execute(
            f"SELECT {_COLUMN_LIST} FROM ledger_records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return None if row is None else record_from_row(row)

    def _rows(self, from_seq: int, limit: int | None) -> Iterator[LedgerRecord]:
        # Keyset pagination: no cursor stays open between chunks, and the
        # connection reads text columns as bytes so a tampered, non-UTF-8 value
        # is reported by verification instead of raising.
        remaining = limit
        next_seq = from_seq
        while remaining is None or remaining > 0:
            size = _CHUNK if remaining is None else min(_CHUNK, remaining)
            with self._lock:
                self._conn.text_factory = bytes
                try:
                    rows = self._conn.execute(
                        f"SELECT {_COLUMN_LIST} FROM ledger_records WHERE seq >= ? "
                        "ORDER BY seq LIMIT ?",
                        (next_seq, size),
                    ).fetchall()
                except sqlite3.Error as exc:
                    raise LedgerBackendError(self.location, "read", str(exc)) from None
                finally:
                    self._conn.text_factory = str
            for row in rows:
                yield record_from_row(row)
            if len(rows) < size:
                return
            next_seq = int(rows[-1][0]) + 1
            if remaining is not None:
                remaining -= len(rows)

    def _seq_of_hash(self, event_hash: str) -> int | None:
        row = self._conn.execute(
            "SELECT seq FROM ledger_records WHERE event_hash = ? ORDER BY seq LIMIT 1",
            (event_hash,),
        ).fetchone()
        return None if row is None else int(row[0])

    def _close(self) -> None:
        self._conn.close()
