"""The PostgreSQL ledger backend against the real server (L2, L3, L6, idempotency).

The server is ``THUNDERLINE_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Unreachable: the tests skip,
unless ``THUNDERLINE_REQUIRE_SERVICES=1``, when they fail. Each test uses its own
schema, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from thunderline.domains._event import Event
from thunderline.domains._ledger._core import (
    DuplicateEventError,
    LedgerBackend,
    LedgerBackendError,
    LedgerKeyMismatchError,
    LedgerNotFoundError,
    ProblemKind,
    open_async_ledger,
    open_ledger,
)
from thunderline.domains._ledger._postgres import PostgresLedger, redact_url
from thunderline.domains._ledger._signing import LedgerSigningKey, SigningKeyError

URL = os.environ.get("THUNDERLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRED = os.environ.get("THUNDERLINE_REQUIRE_SERVICES") == "1"


def _reachable() -> str | None:
    try:
        with psycopg.connect(URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


@pytest.fixture(scope="module")
def server() -> str:
    problem = _reachable()
    if problem is not None:
        message = f"PostgreSQL at {redact_url(URL)} is unreachable: {problem}"
        if REQUIRED:
            pytest.fail(message + " (THUNDERLINE_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    return URL


def _drop(schema: str) -> None:
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def schema(server: str) -> Iterator[str]:
    name = f"tl_test_{uuid.uuid4().hex[:12]}"
    yield name
    _drop(name)


def events(count: int, tag: str = "x") -> list[Event]:
    return [
        Event.new("system.heartbeat", type="heartbeat", source="vault", payload={"i": i, "t": tag})
        for i in range(count)
    ]


def test_append_verify_head(tmp_path: Path, schema: str) -> None:
    with open_ledger(URL, data_dir=tmp_path, schema=schema) as ledger:
        assert isinstance(ledger, PostgresLedger)
        records = ledger.append_batch(events(5))
        assert [r.seq for r in records] == [1, 2, 3, 4, 5]
        head = ledger.signed_head()
        assert ledger.verify(head).ok
        assert ledger.read(4) == records[3:]
    with open_ledger(URL, read_only=True, schema=schema) as reader:
        report = reader.verify(head)
        assert report.ok
        assert report.last_seq == 5


def test_triggers_reject_update_delete_truncate(tmp_path: Path, schema: str) -> None:
    """L6: UPDATE, DELETE and TRUNCATE are rejected on both tables."""
    with open_ledger(URL, data_dir=tmp_path, schema=schema) as ledger:
        ledger.append_batch(events(2))
    records = sql.Identifier(schema, "ledger_records")
    meta = sql.Identifier(schema, "ledger_meta")
    statements = [
        sql.SQL("UPDATE {} SET canonical = '\\x00' WHERE seq = 1").format(records),
        sql.SQL("UPDATE {} SET seq = 99 WHERE seq = 2").format(records),
        sql.SQL("DELETE FROM {} WHERE seq = 2").format(records),
        sql.SQL("DELETE FROM {}").format(records),
        sql.SQL("TRUNCATE {}").format(records),
        sql.SQL("UPDATE {} SET value = 'x'").format(meta),
        sql.SQL("DELETE FROM {}").format(meta),
        sql.SQL("TRUNCATE {}").format(meta),
    ]
    with psycopg.connect(URL, autocommit=True) as conn:
        for statement in statements:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
    with open_ledger(URL, read_only=True, schema=schema) as ledger:
        assert ledger.verify().records == 3


@pytest.fixture(scope="module")
def tamper_ledger(
    server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, LedgerBackend]]:
    schema = f"tl_test_{uuid.uuid4().hex[:12]}"
    ledger = open_ledger(URL, data_dir=tmp_path_factory.mktemp("pg"), schema=schema)
    ledger.append_batch(events(6))
    yield schema, ledger
    ledger.close()
    _drop(schema)


BYTE_COLUMNS = ["event_id", "canonical", "prev_hash", "event_hash", "event_signature", "key_id"]


@given(
    position=st.integers(0, 6),
    column=st.sampled_from([*BYTE_COLUMNS, "ledger_version", "seq"]),
    index=st.integers(0, 10_000),
    bit=st.integers(0, 6),
)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_flipped_byte_detected_at_its_seq(
    tamper_ledger: tuple[str, LedgerBackend], position: int, column: str, index: int, bit: int
) -> None:
    """L2 on PostgreSQL: change one stored value (triggers disabled), verify finds its seq."""
    schema, ledger = tamper_ledger
    table = sql.Identifier(schema, "ledger_records")
    col = sql.Identifier(column)
    with psycopg.connect(URL, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT {} FROM {} WHERE seq = %s").format(col, table), (position,)
        ).fetchone()
        assert row is not None
        original = row[0]
        if isinstance(original, int):
            changed: object = original + 1000 + (1 << (index % 20))
        else:
            raw = bytearray(original if isinstance(original, bytes) else original.encode())
            raw[index % len(raw)] ^= 1 << bit  # bit < 7 keeps ASCII text valid UTF-8
            changed = bytes(raw) if isinstance(original, bytes) else raw.decode()
            if changed == original:
                return
        conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(table))
        update = sql.SQL("UPDATE {} SET {} = %s WHERE {} = %s").format(
            table, col, col if column == "seq" else sql.Identifier("seq")
        )
        try:
            conn.execute(update, (changed, original if column == "seq" else position))
            report = ledger.verify()
        finally:
            conn.execute(update, (original, changed if column == "seq" else position))
            conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(table))
    assert not report.ok
    assert report.first_bad_seq == position, report
    assert ledger.verify().ok


def test_delete_reorder_truncate(tmp_path: Path, schema: str) -> None:
    with open_ledger(URL, data_dir=tmp_path, schema=schema) as ledger:
        ledger.append_batch(events(6))
        head = ledger.signed_head()
    table = sql.Identifier(schema, "ledger_records")
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(table))
        # reorder: swap the contents of seq 2 and 4 (through a free seq)
        conn.execute(sql.SQL("UPDATE {} SET seq = 100 WHERE seq = 2").format(table))
        conn.execute(sql.SQL("UPDATE {} SET seq = 2 WHERE seq = 4").format(table))
        conn.execute(sql.SQL("UPDATE {} SET seq = 4 WHERE seq = 100").format(table))
    with open_ledger(URL, read_only=True, schema=schema) as ledger:
        report = ledger.verify(head)
        assert (report.first_bad_seq, report.problem) == (2, ProblemKind.REORDER)
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DELETE FROM {} WHERE seq IN (2, 4)").format(table))
    with open_ledger(URL, read_only=True, schema=schema) as ledger:
        report = ledger.verify(head)
        assert (report.first_bad_seq, report.problem) == (2, ProblemKind.GAP)
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DELETE FROM {} WHERE seq >= 2").format(table))
    with open_ledger(URL, read_only=True, schema=schema) as ledger:
        assert ledger.verify().ok  # truncation alone is undetectable...
        report = ledger.verify(head)  # ...but not against a saved head
        assert (report.first_bad_seq, report.problem) == (2, ProblemKind.TRUNCATED)


def test_idempotent_append_and_conflicts(tmp_path: Path, schema: str) -> None:
    batch = events(3)
    with open_ledger(URL, data_dir=tmp_path, schema=schema) as ledger:
        first = ledger.append_batch(batch)
    with open_ledger(URL, data_dir=tmp_path, schema=schema) as ledger:  # "after a crash"
        assert ledger.append_batch(batch) == first
        clash = Event.new("other.name", type="heartbeat", source="vault", id=batch[0].id)
        with pytest.raises(DuplicateEventError, match="at seq 1"):
            ledger.append_batch([*events(2, "more"), clash])
        assert ledger.head().seq == 3
        assert ledger.verify().ok


def test_key_and_opening_errors(tmp_path: Path, schema: str) -> None:
    with pytest.raises(LedgerNotFoundError, match="no ledger tables"):
        open_ledger(URL, read_only=True, schema=schema)
    with open_ledger(URL, data_dir=tmp_path / "a", schema=schema):
        pass
    with pytest.raises(SigningKeyError, match="no such file"):  # never a new key for it
        open_ledger(URL, data_dir=tmp_path / "b", schema=schema)
    LedgerSigningKey.load_or_create(tmp_path / "b")
    with pytest.raises(LedgerKeyMismatchError):
        open_ledger(URL, data_dir=tmp_path / "b", schema=schema)
    bad = "postgresql://nobody:secret@127.0.0.1:1/none"
    with pytest.raises(LedgerBackendError, match="connect failed") as info:
        open_ledger(bad, data_dir=tmp_path / "a", schema=schema)
    assert "secret" not in str(info.value)


@pytest.mark.anyio
async def test_async_on_postgres(tmp_path: Path, schema: str) -> None:
    async with await open_async_ledger(URL, data_dir=tmp_path, schema=schema) as ledger:
        records = await ledger.append_batch(events(3))
        assert [r.seq for r in records] == [1, 2, 3]
        assert (await ledger.verify(await ledger.signed_head())).ok
