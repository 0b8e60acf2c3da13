"""The PostgreSQL ledger backend (psycopg 3), selected by a ``postgresql://`` URL.

Use :func:`thunderline.domains._ledger._core.open_ledger`::

    ledger = open_ledger("postgresql://app@db/ledger", data_dir="/var/lib/app/keys")

The tables ``ledger_records`` and ``ledger_meta`` live in one schema (default
``thunderline_ledger``, created if missing). Each batch is one transaction that
first takes ``LOCK TABLE ledger_records IN SHARE ROW EXCLUSIVE MODE`` (writers
serialize, readers do not block) and commits before returning. Row-level
``BEFORE UPDATE OR DELETE`` triggers and a statement-level ``BEFORE TRUNCATE``
trigger (TRUNCATE fires no DELETE trigger) reject every change on both tables.
A superuser can still disable triggers; the hashes, signatures and saved heads
detect what they then change. For defence in depth also ``REVOKE UPDATE,
DELETE, TRUNCATE`` from the application role (not done here: the role that
creates the tables owns them).

Thread safety: one connection used under the backend's lock.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from thunderline.domains._ledger._core import (
    COLUMNS,
    LEDGER_VERSION,
    LedgerBackend,
    LedgerBackendError,
    LedgerConfigError,
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

__all__ = ["PostgresLedger", "redact_url"]

_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_CHUNK = 1000


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``.

    .. versionadded:: 0.1
    """
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def _ddl(schema: str) -> list[sql.Composed]:
    s = sql.Identifier(schema)
    reject = sql.Identifier(schema, "ledger_reject_change")
    statements = [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.ledger_meta ( key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        ).format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.ledger_records ("
            " seq BIGINT PRIMARY KEY CHECK (seq >= 0),"
            " event_id TEXT NOT NULL UNIQUE,"
            " canonical BYTEA NOT NULL,"
            " prev_hash TEXT NOT NULL,"
            " event_hash TEXT NOT NULL,"
            " event_signature BYTEA NOT NULL,"
            " key_id TEXT NOT NULL,"
            " ledger_version INTEGER NOT NULL)"
        ).format(s),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS ledger_records_event_hash ON {}.ledger_records (event_hash)"
        ).format(s),
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN RAISE EXCEPTION 'ledger is append-only: % on % rejected',"
            " TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege'; END $$"
        ).format(reject),
    ]
    for table in ("ledger_records", "ledger_meta"):
        t = sql.Identifier(schema, table)
        statements += [
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                sql.Identifier(f"{table}_no_update_delete"), t
            ),
            sql.SQL(
                "CREATE TRIGGER {} BEFORE UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}()"
            ).format(sql.Identifier(f"{table}_no_update_delete"), t, reject),
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                sql.Identifier(f"{table}_no_truncate"), t
            ),
            sql.SQL(
                "CREATE TRIGGER {} BEFORE TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()"
            ).format(sql.Identifier(f"{table}_no_truncate"), t, reject),
        ]
    return statements


class PostgresLedger(LedgerBackend):
    """A ledger in a PostgreSQL schema. Open it with :func:`open_ledger`.

    Attributes:
        schema: The schema holding the ledger tables.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        location: str,
        connection: psycopg.Connection[Any],
        schema: str,
        signing_key: LedgerSigningKey | None,
    ) -> None:
        """Wrap an open connection to an initialised ledger (use :meth:`open`)."""
        super().__init__(location, signing_key)
        self._conn = connection
        self.schema = schema
        self._records = sql.Identifier(schema, "ledger_records")
        self._columns = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
        self._adopt_public_key(signing_key)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        data_dir: str | Path | None,
        create: bool,
        read_only: bool,
        schema: str,
    ) -> PostgresLedger:
        """Connect to ``url`` and open (or create) the ledger in ``schema``.

        See :func:`open_ledger` for the options and errors.

        .. versionadded:: 0.1
        """
        location = redact_url(url) + f" (schema {schema})"
        if not _SCHEMA_RE.fullmatch(schema):
            raise LedgerConfigError(
                "schema", "a lowercase SQL identifier ([a-z_][a-z0-9_]*, <= 63 chars)", schema
            )
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise LedgerBackendError(location, "connect", _one_line(exc)) from None
        try:
            if not _has_tables(conn, schema) and (read_only or not create):
                raise LedgerNotFoundError(location, "no ledger tables in the schema")
            # the key is looked for only once the schema is known to hold a ledger,
            # and created (with its public key file) only for a new ledger
            initialised = _has_tables(conn, schema) and cls._has_meta(conn, schema)
            key = load_signing_key(data_dir, create=create and not initialised, read_only=read_only)
            if not read_only and create:
                assert key is not None
                cls._initialise(conn, schema, key)
            elif not cls._has_meta(conn, schema):
                raise LedgerNotFoundError(location, "the ledger was never initialised")
            ledger = cls(location, conn, schema, key)
            if not read_only:
                ledger._check_before_append()
            return ledger
        except psycopg.Error as exc:
            conn.close()
            raise LedgerBackendError(location, "open", _one_line(exc)) from None
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _has_meta(conn: psycopg.Connection[Any], schema: str) -> bool:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE key = 'public_key_pem'").format(
                sql.Identifier(schema, "ledger_meta")
            )
        ).fetchone()
        return row is not None and row[0] > 0

    @staticmethod
    def _initialise(conn: psycopg.Connection[Any], schema: str, key: LedgerSigningKey) -> None:
        with conn.transaction():
            # Serialize concurrent initialisers (and DDL) on one advisory lock.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"thunderline:{schema}",))
            if _has_tables(conn, schema) and PostgresLedger._has_meta(conn, schema):
                return
            for statement in _ddl(schema):
                conn.execute(statement)
            meta = {
                "ledger_version": str(LEDGER_VERSION),
                "public_key_pem": public_key_pem(key.public_key),
                "key_id": key.key_id,
                "created_at": _dt.datetime.now(_dt.UTC).isoformat(),
            }
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL("INSERT INTO {} (key, value) VALUES (%s, %s)").format(
                        sql.Identifier(schema, "ledger_meta")
                    ),
                    sorted(meta.items()),
                )
                genesis = genesis_record(key)
                cur.execute(
                    sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                        sql.Identifier(schema, "ledger_records"),
                        sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS),
                        sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS)),
                    ),
                    genesis.row(),
                )

    def _meta(self) -> dict[str, str]:
        try:
            rows = self._conn.execute(
                sql.SQL("SELECT key, value FROM {}").format(
                    sql.Identifier(self.schema, "ledger_meta")
                )
            ).fetchall()
        except psycopg.Error as exc:
            raise LedgerBackendError(self.location, "read metadata", _one_line(exc)) from None
        return {str(k): str(v) for k, v in rows}

    def _append(
        self, key: LedgerSigningKey, prepared: Sequence[tuple[str, bytes]]
    ) -> list[LedgerRecord]:
        try:
            with self._conn.transaction():
                self._conn.execute(
                    sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(self._records)
                )
                tail = self._tail()
                assert tail is not None
                ids = sorted({event_id for event_id, _ in prepared})
                existing: dict[str, LedgerRecord] = {}
                for row in self._conn.execute(
                    sql.SQL("SELECT {} FROM {} WHERE event_id = ANY(%s)").format(
                        self._columns, self._records
                    ),
                    (ids,),
                ):
                    record = record_from_row(row)
                    existing[record.event_id] = record
                new, result = self._build_batch(key, tail, prepared, existing)
                if new:
                    with self._conn.cursor() as cur:
                        cur.executemany(
                            sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                                self._records,
                                self._columns,
                                sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS)),
                            ),
                            [record.row() for record in new],
                        )
        except psycopg.Error as exc:
            raise LedgerBackendError(self.location, "append", _one_line(exc)) from None
        return result

    def _count(self) -> int:
        try:
            row = self._conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(self._records)
            ).fetchone()
        except psycopg.Error as exc:
            raise LedgerBackendError(self.location, "count records", _one_line(exc)) from None
        return int(row[0]) if row is not None else 0

    def _tail(self) -> LedgerRecord | None:
        try:
            row = self._conn.execute(
                sql.SQL("SELECT {} FROM {} ORDER BY seq DESC LIMIT 1").format(
                    self._columns, self._records
                )
            ).fetchone()
        except psycopg.Error as exc:
            raise LedgerBackendError(self.location, "read the head", _one_line(exc)) from None
        return None if row is None else record_from_row(row)

    def _rows(self, from_seq: int, limit: int | None) -> Iterator[LedgerRecord]:
        remaining = limit
        next_seq = from_seq
        query = sql.SQL("SELECT {} FROM {} WHERE seq >= %s ORDER BY seq LIMIT %s").format(
            self._columns, self._records
        )
        while remaining is None or remaining > 0:
            size = _CHUNK if remaining is None else min(_CHUNK, remaining)
            with self._lock:
                try:
                    rows = self._conn.execute(query, (next_seq, size)).fetchall()
                except psycopg.Error as exc:
                    raise LedgerBackendError(self.location, "read", _one_line(exc)) from None
            for row in rows:
                yield record_from_row(row)
            if len(rows) < size:
                return
            next_seq = int(rows[-1][0]) + 1
            if remaining is not None:
                remaining -= len(rows)

    def _seq_of_hash(self, event_hash: str) -> int | None:
        try:
            row = self._conn.execute(
                sql.SQL("SELECT seq FROM {} WHERE event_hash = %s ORDER BY seq LIMIT 1").format(
                    self._records
                ),
                (event_hash,),
            ).fetchone()
        except psycopg.Error as exc:
            raise LedgerBackendError(self.location, "read", _one_line(exc)) from None
        return None if row is None else int(row[0])

    def _close(self) -> None:
        self._conn.close()


def _has_tables(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables"
        " WHERE table_schema = %s AND table_name IN ('ledger_meta', 'ledger_records')",
        (schema,),
    ).fetchone()
    return row is not None and row[0] == 2


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
