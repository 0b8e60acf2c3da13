"""The ledger: L1-L4 and L6-L7 on the chain model and on SQLite; keys; async wrapper."""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import sqlite3
import stat
import tempfile
import threading
import uuid
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thunderline.domains._event import Event
from thunderline.domains._ledger._core import (
    GENESIS_CANONICAL,
    GENESIS_EVENT_ID,
    GENESIS_HASH,
    ZERO_HASH,
    AsyncLedger,
    DuplicateEventError,
    HeadFormatError,
    LedgerBackendError,
    LedgerConfigError,
    LedgerKeyMismatchError,
    LedgerNotFoundError,
    LedgerReadOnlyError,
    LedgerRecord,
    ProblemKind,
    SignedHead,
    compute_event_hash,
    head_message,
    open_async_ledger,
    open_ledger,
    verify_records,
)
from thunderline.domains._ledger._signing import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    LedgerSigningKey,
    SigningKeyError,
    key_id_of,
    load_public_key_pem,
)
from thunderline.domains._ledger._sqlite import SqliteLedger
from thunderline.runtime._errors import ThunderlineError

N_EVENTS = 8  # records 0 (genesis) .. 8


def events(count: int, tag: str = "x") -> list[Event]:
    return [
        Event.new(
            "system.heartbeat",
            type="heartbeat",
            source="gate",
            payload={"i": i, "tag": tag},
            meta={"trace_id": f"{i + 1:032x}", "span_id": f"{i + 1:016x}"},
        )
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[LedgerRecord], SignedHead]:
    """A SQLite ledger with genesis + N_EVENTS records, its records and its head."""
    directory = tmp_path_factory.mktemp("built")
    with open_ledger(directory / "ledger.db") as ledger:
        ledger.append_batch(events(3))
        ledger.append_batch(events(N_EVENTS - 3, tag="y"))
        records = ledger.read()
        head = ledger.signed_head()
    return directory / "ledger.db", records, head


@pytest.fixture(scope="module")
def public_key(built: tuple[Path, list[LedgerRecord], SignedHead]):  # type: ignore[no-untyped-def]
    return load_public_key_pem((built[0].parent / PUBLIC_KEY_FILE).read_bytes())


def lookup(records: list[LedgerRecord]):  # type: ignore[no-untyped-def]
    table: dict[str, int] = {}
    for record in records:
        table.setdefault(record.event_hash, record.seq)
    return table.get


# --------------------------------------------------------------------------- L1


def test_chain_links_and_genesis(built: tuple[Path, list[LedgerRecord], SignedHead]) -> None:
    """L1: prev_hash links, fixed genesis, seq strictly increasing without gaps."""
    _, records, _ = built
    assert [r.seq for r in records] == list(range(N_EVENTS + 1))
    genesis = records[0]
    assert (genesis.event_id, genesis.canonical) == (GENESIS_EVENT_ID, GENESIS_CANONICAL)
    assert (genesis.prev_hash, genesis.event_hash) == (ZERO_HASH, GENESIS_HASH)
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.event_hash
        assert after.event_hash == compute_event_hash(before.event_hash, after.canonical)
        assert after.event().id == uuid.UUID(after.event_id)
        assert after.ledger_version == 1


def test_hash_definition_is_sha256_of_prev_bytes_and_canonical() -> None:
    import hashlib

    canonical = b'{"a":1}'
    expected = hashlib.sha256(bytes.fromhex("ab" * 32) + canonical).hexdigest()
    assert compute_event_hash("ab" * 32, canonical) == expected


def test_verify_ok(built: tuple[Path, list[LedgerRecord], SignedHead], public_key) -> None:  # type: ignore[no-untyped-def]
    path, records, head = built
    report = verify_records(records, public_key, head=head)
    assert report.ok
    assert (report.records, report.last_seq, report.last_hash) == (
        N_EVENTS + 1,
        N_EVENTS,
        records[-1].event_hash,
    )
    assert report.head_checked
    with open_ledger(path, read_only=True) as ledger:
        assert ledger.verify(head) == report


# --------------------------------------------------------------------------- L2 model

COLUMNS = [f.name for f in attrs.fields(LedgerRecord)]


def flip(record: LedgerRecord, column: str, index: int, bit: int) -> LedgerRecord:
    value = getattr(record, column)
    if isinstance(value, int):
        return attrs.evolve(record, **{column: value ^ (1 << (index % 40))})
    raw = bytearray(value if isinstance(value, bytes) else value.encode())
    raw[index % len(raw)] ^= 1 << bit
    new: bytes | str = bytes(raw) if isinstance(value, bytes) else raw.decode("utf-8", "replace")
    return attrs.evolve(record, **{column: new})


@given(
    position=st.integers(0, N_EVENTS),
    column=st.sampled_from(COLUMNS),
    index=st.integers(0, 10_000),
    bit=st.integers(0, 7),
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_flipped_byte_is_detected_at_its_seq(
    built: tuple[Path, list[LedgerRecord], SignedHead],
    public_key,  # type: ignore[no-untyped-def]
    position: int,
    column: str,
    index: int,
    bit: int,
) -> None:
    """L2: a changed byte in any column of any record is found at that record's seq."""
    _, records, head = built
    tampered = list(records)
    tampered[position] = flip(records[position], column, index, bit)
    # The store returns rows ordered by seq; a changed seq moves the row.
    seqs = [r.seq for r in tampered]
    if len(set(seqs)) != len(seqs):
        return  # the primary key would have rejected the change
    tampered.sort(key=lambda r: r.seq)
    for saved in (None, head):
        report = verify_records(tampered, public_key, head=saved, seq_of_hash=lookup(tampered))
        assert not report.ok
        assert report.first_bad_seq == position, report
        assert str(position) in str(report)


@given(position=st.integers(0, N_EVENTS - 1))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_deleted_record_is_a_gap(
    built: tuple[Path, list[LedgerRecord], SignedHead],
    public_key,
    position: int,  # type: ignore[no-untyped-def]
) -> None:
    _, records, _ = built
    tampered = records[:position] + records[position + 1 :]
    report = verify_records(tampered, public_key)
    assert (report.ok, report.first_bad_seq, report.problem) == (False, position, ProblemKind.GAP)


@given(position=st.integers(1, N_EVENTS + 1), copy=st.booleans())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_inserted_record_is_detected(
    built: tuple[Path, list[LedgerRecord], SignedHead],
    public_key,  # type: ignore[no-untyped-def]
    position: int,
    copy: bool,
) -> None:
    """A forger without the key inserts a well-chained record, or copies an existing one."""
    _, records, _ = built
    if copy:
        forged = attrs.evolve(records[(position + 3) % len(records)], seq=position)
    else:
        prev = records[position - 1]
        canonical = events(1, tag="forged")[0].canonical_bytes()
        event_hash = compute_event_hash(prev.event_hash, canonical)
        forger = LedgerSigningKey.generate()
        forged = attrs.evolve(
            prev,
            seq=position,
            event_id=str(Event.from_json(canonical).id),
            canonical=canonical,
            prev_hash=prev.event_hash,
            event_hash=event_hash,
            event_signature=forger.sign(bytes.fromhex(event_hash)),
        )
    tail = [attrs.evolve(r, seq=r.seq + 1) for r in records[position:]]
    tampered = [*records[:position], forged, *tail]
    report = verify_records(tampered, public_key, seq_of_hash=lookup(tampered))
    assert not report.ok
    assert report.first_bad_seq == position
    if not copy:
        assert report.problem is ProblemKind.BAD_SIGNATURE


@given(data=st.data())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_reordered_records_are_detected(
    built: tuple[Path, list[LedgerRecord], SignedHead],
    public_key,  # type: ignore[no-untyped-def]
    data: st.DataObject,
) -> None:
    _, records, _ = built
    i = data.draw(st.integers(1, N_EVENTS - 1))
    j = data.draw(st.integers(i + 1, N_EVENTS))
    contents = list(records)
    contents[i], contents[j] = contents[j], contents[i]
    tampered = [attrs.evolve(r, seq=n) for n, r in enumerate(contents)]  # seq stays positional
    report = verify_records(tampered, public_key, seq_of_hash=lookup(tampered))
    assert (report.ok, report.first_bad_seq, report.problem) == (False, i, ProblemKind.REORDER)
    # Without a hash index the same break is still found, as a prev_hash mismatch.
    plain = verify_records(tampered, public_key)
    assert (plain.first_bad_seq, plain.problem) == (i, ProblemKind.PREV_HASH_MISMATCH)


# --------------------------------------------------------------------------- L3


@given(keep=st.integers(1, N_EVENTS))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_truncation_needs_a_saved_head(
    built: tuple[Path, list[LedgerRecord], SignedHead],
    public_key,
    keep: int,  # type: ignore[no-untyped-def]
) -> None:
    """L3: a cut tail verifies on its own (documented limitation) but not against the head."""
    _, records, head = built
    truncated = records[:keep]
    assert verify_records(truncated, public_key).ok  # undetectable without a head
    report = verify_records(truncated, public_key, head=head)
    assert (report.ok, report.first_bad_seq, report.problem) == (False, keep, ProblemKind.TRUNCATED)
    assert f"ends at seq {keep - 1}" in report.detail


def test_empty_ledger_is_reported(public_key) -> None:  # type: ignore[no-untyped-def]
    report = verify_records([], public_key)
    assert (report.ok, report.first_bad_seq, report.problem) == (False, 0, ProblemKind.EMPTY)


def test_rewrite_with_another_key(tmp_path: Path, built, public_key) -> None:  # type: ignore[no-untyped-def]
    """A wholesale rewrite verifies on its own, fails against the head or a trusted key."""
    _, _, head = built
    with open_ledger(tmp_path / "forged.db") as forged:
        forged.append_batch(events(N_EVENTS))
        assert forged.verify().ok  # limitation: self-consistent
        report = forged.verify(head)
        assert (report.ok, report.problem) == (False, ProblemKind.BAD_HEAD_SIGNATURE)
        trusted = forged.verify(public_key=public_key)
        assert (trusted.first_bad_seq, trusted.problem) == (0, ProblemKind.KEY_MISMATCH)


def test_rewrite_by_the_key_holder_is_a_head_mismatch(tmp_path: Path) -> None:
    with open_ledger(tmp_path / "a.db") as first, open_ledger(tmp_path / "b.db") as second:
        first.append_batch(events(4, "a"))
        second.append_batch(events(5, "b"))
        head = first.signed_head()
        report = second.verify(head)
        assert (report.ok, report.first_bad_seq, report.problem) == (
            False,
            4,
            ProblemKind.HEAD_MISMATCH,
        )
        assert second.verify(second.signed_head()).ok


# --------------------------------------------------------------------------- L4


def test_signatures_verify_and_fail_after_change(built, public_key) -> None:  # type: ignore[no-untyped-def]
    _, records, head = built
    from thunderline.domains._ledger._signing import verify_signature

    for record in records:
        message = bytes.fromhex(record.event_hash)
        assert verify_signature(public_key, record.event_signature, message)
        changed = bytes([message[0] ^ 1]) + message[1:]
        assert not verify_signature(public_key, record.event_signature, changed)
        assert record.key_id == key_id_of(public_key)
    assert head.verify_signature(public_key)
    assert not attrs.evolve(head, seq=head.seq - 1).verify_signature(public_key)
    assert not attrs.evolve(head, hash=ZERO_HASH).verify_signature(public_key)
    # a record signature is never a valid head signature (domain separation)
    last = records[-1]
    forged_head = SignedHead(last.seq, last.event_hash, last.key_id, last.event_signature)
    assert not forged_head.verify_signature(public_key)
    assert head_message(1, ZERO_HASH).startswith(b"thunderline.ledger.head.v1\x00")


@given(
    st.permutations(["id", "name", "type", "source", "payload", "meta", "priority", "occurred_at"])
)
def test_signatures_cover_canonical_bytes_not_key_order(order: list[str]) -> None:
    import json

    event = events(1)[0]
    data = event.to_dict()
    reordered = json.dumps({key: data[key] for key in order}, indent=1)
    assert Event.from_json(reordered).canonical_bytes() == event.canonical_bytes()


def test_signed_head_json_round_trip(tmp_path: Path, built) -> None:  # type: ignore[no-untyped-def]
    _, _, head = built
    assert SignedHead.from_json(head.to_json()) == head
    head.write(tmp_path / "head.json")
    assert SignedHead.read(tmp_path / "head.json") == head
    for bad, fragment in [
        ("nope", "not JSON"),
        ("[]", "expected a JSON object"),
        ('{"seq": 1}', "expected exactly the keys"),
        (head.to_json().replace(head.hash, "zz"), "hash: expected 64 lowercase hex"),
    ]:
        with pytest.raises(HeadFormatError, match=fragment):
            SignedHead.from_json(bad, source="h.json")
    with pytest.raises(HeadFormatError, match=r"missing\.json"):
        SignedHead.read(tmp_path / "missing.json")


# --------------------------------------------------------------------------- SQLite storage


def _copy(path: Path, into: Path) -> Path:
    target = into / "ledger.db"
    shutil.copy(path, target)
    return target


def _drop_triggers(conn: sqlite3.Connection) -> None:
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")


@given(
    position=st.integers(0, N_EVENTS),
    column=st.sampled_from(COLUMNS),
    index=st.integers(0, 10_000),
    bit=st.integers(0, 7),
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_sqlite_flipped_byte_in_any_stored_column(
    built,
    position: int,
    column: str,
    index: int,
    bit: int,  # type: ignore[no-untyped-def]
) -> None:
    """L2 on the real store: flip one byte of a stored column, verify finds that seq."""
    path, _, head = built
    with tempfile.TemporaryDirectory() as scratch:
        target = _copy(path, Path(scratch))
        conn = sqlite3.connect(target)
        _drop_triggers(conn)
        conn.text_factory = bytes
        (value,) = conn.execute(
            f"SELECT {column} FROM ledger_records WHERE seq = ?", (position,)
        ).fetchone()
        if isinstance(value, int):
            new_value: object = value ^ (1 << (index % 40))
            if (
                column == "seq"
                and conn.execute(
                    "SELECT 1 FROM ledger_records WHERE seq = ?", (new_value,)
                ).fetchone()
            ):
                conn.close()
                return
        else:
            raw = bytearray(value)
            raw[index % len(raw)] ^= 1 << bit
            new_value = bytes(raw)  # stored as a BLOB even in TEXT columns
        conn.execute(f"UPDATE ledger_records SET {column} = ? WHERE seq = ?", (new_value, position))
        conn.commit()
        conn.close()
        with open_ledger(target, read_only=True) as ledger:
            report = ledger.verify(head)
        assert not report.ok
        assert report.first_bad_seq == position, report


@pytest.mark.parametrize("position", [0, 3, N_EVENTS - 1])
def test_sqlite_deleted_and_reordered_rows(tmp_path: Path, built, position: int) -> None:  # type: ignore[no-untyped-def]
    path, _, head = built
    target = _copy(path, tmp_path)
    conn = sqlite3.connect(target)
    _drop_triggers(conn)
    conn.execute("DELETE FROM ledger_records WHERE seq = ?", (position,))
    conn.commit()
    with open_ledger(target, read_only=True) as ledger:
        report = ledger.verify(head)
    assert (report.first_bad_seq, report.problem) == (position, ProblemKind.GAP)
    # reorder: swap the contents of two rows, keeping seq positional
    target2 = tmp_path / "two.db"
    shutil.copy(path, target2)
    conn = sqlite3.connect(target2)
    _drop_triggers(conn)
    cols = ", ".join(COLUMNS[1:])
    a, b = position + 1, position + 2 if position + 2 <= N_EVENTS else position
    if a > N_EVENTS or a == b:
        a, b = 1, 2
    row_a = conn.execute(f"SELECT {cols} FROM ledger_records WHERE seq = ?", (a,)).fetchone()
    row_b = conn.execute(f"SELECT {cols} FROM ledger_records WHERE seq = ?", (b,)).fetchone()
    conn.execute("DELETE FROM ledger_records WHERE seq IN (?, ?)", (a, b))
    marks = ", ".join("?" * len(COLUMNS))
    conn.execute(f"INSERT INTO ledger_records VALUES ({marks})", (a, *row_b))
    conn.execute(f"INSERT INTO ledger_records VALUES ({marks})", (b, *row_a))
    conn.commit()
    with open_ledger(target2, read_only=True) as ledger:
        report = ledger.verify(head)
    assert (report.first_bad_seq, report.problem) == (min(a, b), ProblemKind.REORDER)


def test_sqlite_truncated_tail(tmp_path: Path, built) -> None:  # type: ignore[no-untyped-def]
    path, _, head = built
    target = _copy(path, tmp_path)
    conn = sqlite3.connect(target)
    _drop_triggers(conn)
    conn.execute("DELETE FROM ledger_records WHERE seq >= 5")
    conn.commit()
    with open_ledger(target, read_only=True) as ledger:
        assert ledger.verify().ok
        report = ledger.verify(head)
    assert (report.first_bad_seq, report.problem) == (5, ProblemKind.TRUNCATED)


def test_sqlite_triggers_reject_update_and_delete(tmp_path: Path) -> None:
    """L6 on SQLite (it has no TRUNCATE; an unqualified DELETE fires the trigger)."""
    with open_ledger(tmp_path / "l.db") as ledger:
        ledger.append_batch(events(2))
    conn = sqlite3.connect(tmp_path / "l.db")
    statements = [
        "UPDATE ledger_records SET canonical = x'00' WHERE seq = 1",
        "UPDATE ledger_records SET seq = 99 WHERE seq = 2",
        "DELETE FROM ledger_records WHERE seq = 2",
        "DELETE FROM ledger_records",
        "UPDATE ledger_meta SET value = 'x' WHERE key = 'public_key_pem'",
        "DELETE FROM ledger_meta",
    ]
    for statement in statements:
        with pytest.raises(sqlite3.IntegrityError, match="ledger is append-only"):
            conn.execute(statement)
    conn.close()
    with open_ledger(tmp_path / "l.db", read_only=True) as ledger:
        assert ledger.verify().records == 3


def test_sqlite_uses_wal_and_full_sync(tmp_path: Path) -> None:
    with open_ledger(tmp_path / "l.db") as ledger:
        assert isinstance(ledger, SqliteLedger)
        assert ledger._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert ledger._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


# --------------------------------------------------------------------------- idempotency, L7


def test_append_is_idempotent_by_event_id(tmp_path: Path) -> None:
    batch = events(4)
    with open_ledger(tmp_path / "l.db") as ledger:
        first = ledger.append_batch(batch)
        assert [r.seq for r in first] == [1, 2, 3, 4]
        again = ledger.append_batch([batch[2], *events(1, "new"), batch[0]])
        assert [r.seq for r in again] == [3, 5, 1]
        assert again[0] == first[2]
        assert ledger.head().seq == 5
        dup_in_batch = events(1, "dup")
        assert [r.seq for r in ledger.append_batch(dup_in_batch * 3)] == [6, 6, 6]
        assert ledger.verify().ok
    # a retry after a crash (reopen) never duplicates
    with open_ledger(tmp_path / "l.db") as ledger:
        assert [r.seq for r in ledger.append_batch(batch)] == [1, 2, 3, 4]
        assert ledger.head().seq == 6
        assert len({r.event_id for r in ledger.read()}) == 7


def test_same_id_different_content_rejects_the_whole_batch(tmp_path: Path) -> None:
    original = events(1)[0]
    clash = Event.new(
        "system.other",
        type="heartbeat",
        source="gate",
        id=original.id,
        occurred_at=original.occurred_at,
    )
    with open_ledger(tmp_path / "l.db") as ledger:
        ledger.append(original)
        with pytest.raises(DuplicateEventError) as info:
            ledger.append_batch([*events(2, "fine"), clash])
        assert (info.value.event_id, info.value.seq) == (str(original.id), 1)
        assert f"event {original.id} is already recorded at seq 1" in str(info.value)
        assert isinstance(info.value, ThunderlineError)
        assert ledger.head().seq == 1  # nothing of the batch was written
        with pytest.raises(DuplicateEventError, match="earlier in the same batch") as info:
            ledger.append_batch(
                [clash_free := events(1, "z")[0], attrs.evolve(clash_free, name="a.b")]
            )
        assert info.value.seq is None
        assert ledger.head().seq == 1
        assert ledger.verify().ok


def test_failed_batch_leaves_no_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """L7: a batch is committed entirely or not at all; acknowledged appends persist."""
    with open_ledger(tmp_path / "l.db") as ledger:
        acknowledged = ledger.append_batch(events(2, "ok"))
        key = ledger._signing_key
        assert key is not None
        calls = 0
        real_sign = key.sign

        def failing_sign(message: bytes) -> bytes:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise OSError("disk on fire")
            return real_sign(message)

        monkeypatch.setattr(key, "sign", failing_sign)
        with pytest.raises(OSError, match="disk on fire"):
            ledger.append_batch(events(5, "lost"))
        monkeypatch.undo()
        assert ledger.head() == acknowledged[-1]
    with open_ledger(tmp_path / "l.db", read_only=True) as ledger:
        assert ledger.read(1) == acknowledged
        assert ledger.verify().ok


def test_concurrent_threads_chain_correctly(tmp_path: Path) -> None:
    with open_ledger(tmp_path / "l.db") as ledger:
        batches = [events(5, f"t{n}") for n in range(6)]
        threads = [threading.Thread(target=ledger.append_batch, args=(b,)) for b in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        report = ledger.verify()
        assert report.ok
        assert report.last_seq == 30


def test_two_connections_to_one_file_chain_correctly(tmp_path: Path) -> None:
    with open_ledger(tmp_path / "l.db") as one, open_ledger(tmp_path / "l.db") as two:
        one.append_batch(events(2, "a"))
        two.append_batch(events(2, "b"))
        one.append_batch(events(2, "c"))
        assert two.verify().last_seq == 6


def test_read_and_head(tmp_path: Path) -> None:
    with open_ledger(tmp_path / "l.db") as ledger:
        assert ledger.head().seq == 0
        assert ledger.append_batch([]) == []
        records = ledger.append_batch(events(3))
        assert ledger.read(2) == records[1:]
        assert ledger.read(1, limit=1) == records[:1]
        assert ledger.head() == records[-1]
        assert records[0].event() == events(3)[0].__class__.from_json(records[0].canonical)
        assert records[0].to_dict()["event_signature"] == records[0].event_signature.hex()


# --------------------------------------------------------------------------- keys and opening


def test_key_created_owner_only_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    caplog.set_level(logging.DEBUG)
    with open_ledger(tmp_path / "l.db", data_dir=data) as ledger:
        key_id = ledger.key_id
        key = ledger._signing_key
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / PRIVATE_KEY_FILE).stat().st_mode) == 0o600
    private_pem = (data / PRIVATE_KEY_FILE).read_text()
    assert "PRIVATE KEY" in private_pem
    public = load_public_key_pem((data / PUBLIC_KEY_FILE).read_bytes())
    assert key_id_of(public) == key_id
    assert repr(key) == f"<LedgerSigningKey {key_id}>"
    body = private_pem.splitlines()[1]
    assert body not in caplog.text
    assert "PRIVATE KEY" not in caplog.text
    # the public key is also in the ledger's metadata table
    conn = sqlite3.connect(tmp_path / "l.db")
    meta = dict(conn.execute("SELECT key, value FROM ledger_meta").fetchall())
    assert meta["key_id"] == key_id
    assert load_public_key_pem(meta["public_key_pem"]).public_numbers() == public.public_numbers()
    conn.close()


def test_key_is_reused_and_permissions_are_enforced(tmp_path: Path) -> None:
    first = LedgerSigningKey.load_or_create(tmp_path / "d")
    assert LedgerSigningKey.load_or_create(tmp_path / "d").key_id == first.key_id
    os.chmod(tmp_path / "d" / PRIVATE_KEY_FILE, 0o644)
    with pytest.raises(SigningKeyError, match="permissions 0644 are too open") as info:
        LedgerSigningKey.load(tmp_path / "d")
    assert info.value.path == tmp_path / "d" / PRIVATE_KEY_FILE
    with pytest.raises(SigningKeyError, match="no such file"):
        LedgerSigningKey.load(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / PRIVATE_KEY_FILE).write_text("garbage")
    os.chmod(tmp_path / "bad" / PRIVATE_KEY_FILE, 0o600)
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM"):
        LedgerSigningKey.load(tmp_path / "bad")


def test_key_umask_does_not_widen(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        LedgerSigningKey.load_or_create(tmp_path / "d")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "d" / PRIVATE_KEY_FILE).stat().st_mode) == 0o600


def test_wrong_key_for_a_ledger(tmp_path: Path) -> None:
    with open_ledger(tmp_path / "l.db", data_dir=tmp_path / "k1"):
        pass
    # an existing ledger never gets a new key: a directory without one is an error
    with pytest.raises(SigningKeyError, match="no such file"):
        open_ledger(tmp_path / "l.db", data_dir=tmp_path / "k2")
    assert not (tmp_path / "k2").exists()
    LedgerSigningKey.load_or_create(tmp_path / "k2")
    public_before = (tmp_path / "k2" / "ledger_public_key.pem").read_bytes()
    with pytest.raises(LedgerKeyMismatchError) as info:
        open_ledger(tmp_path / "l.db", data_dir=tmp_path / "k2")
    assert info.value.location == str(tmp_path / "l.db")
    assert "is signed by key sha256:" in str(info.value)
    assert (tmp_path / "k2" / "ledger_public_key.pem").read_bytes() == public_before


def test_opening_errors(tmp_path: Path) -> None:
    with pytest.raises(LedgerNotFoundError, match="no such file"):
        open_ledger(tmp_path / "missing.db", read_only=True)
    with pytest.raises(LedgerNotFoundError, match="no such file"):
        open_ledger(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(LedgerNotFoundError, match="is a directory"):
        open_ledger(tmp_path, read_only=True)
    (tmp_path / "junk.db").write_bytes(b"this is not a database at all" * 100)
    for read_only in (True, False):  # before any key is looked for or created
        with pytest.raises(LedgerNotFoundError, match="not a thunderline ledger"):
            open_ledger(tmp_path / "junk.db", read_only=read_only, data_dir=tmp_path / "k")
    assert not (tmp_path / "k").exists()
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(LedgerNotFoundError, match="not a thunderline ledger"):
        open_ledger(tmp_path / "other.db", read_only=True)
    with pytest.raises(LedgerConfigError, match="path_or_url"):
        open_ledger("mysql://db/x")
    with pytest.raises(LedgerConfigError, match="data_dir"):
        open_ledger("postgresql://localhost/x")


def test_read_only_ledger_refuses_writes(tmp_path: Path) -> None:
    with open_ledger(tmp_path / "l.db"):
        pass
    with open_ledger(tmp_path / "l.db", read_only=True) as ledger:
        assert ledger.read_only
        with pytest.raises(LedgerReadOnlyError, match="cannot append"):
            ledger.append_batch(events(1))
        with pytest.raises(LedgerReadOnlyError, match="cannot sign the head"):
            ledger.signed_head()
    ledger.close()  # idempotent
    with pytest.raises(LedgerBackendError, match="closed"):
        ledger.head()


# --------------------------------------------------------------------------- async


@pytest.mark.anyio
async def test_async_ledger_runs_in_a_worker_thread(tmp_path: Path) -> None:
    ledger = await open_async_ledger(tmp_path / "l.db")
    loop_thread = threading.get_ident()
    seen: list[int] = []
    real = ledger.backend.append_batch

    def spy(batch):  # type: ignore[no-untyped-def]
        seen.append(threading.get_ident())
        return real(batch)

    ledger.backend.append_batch = spy  # type: ignore[method-assign]
    async with ledger:
        record = await ledger.append(events(1)[0])
        assert record.seq == 1
        assert seen
        assert loop_thread not in seen
        assert (await ledger.head()).seq == 1
        assert (await ledger.read(1)) == [record]
        head = await ledger.signed_head()
        assert (await ledger.verify(head)).ok


@pytest.mark.anyio
async def test_async_concurrent_appends(tmp_path: Path) -> None:
    import anyio

    async with AsyncLedger(open_ledger(tmp_path / "l.db")) as ledger:
        acknowledged: list[LedgerRecord] = []

        async def writer(n: int) -> None:
            acknowledged.extend(await ledger.append_batch(events(4, f"w{n}")))

        async with anyio.create_task_group() as tg:
            for n in range(5):
                tg.start_soon(writer, n)
        report = await ledger.verify()
        assert report.ok
        assert report.last_seq == 20
        assert sorted(r.seq for r in acknowledged) == list(range(1, 21))


@pytest.mark.parametrize(
    ("error", "attributes", "message"),
    [
        (
            LedgerNotFoundError("x.db", "no such file"),
            {"location": "x.db", "reason": "no such file"},
            "no ledger at x.db: no such file",
        ),
        (
            LedgerConfigError("schema", "an identifier", "Bad-Name"),
            {"option": "schema", "expected": "an identifier", "received": "Bad-Name"},
            "ledger option schema: expected an identifier, got 'Bad-Name'",
        ),
        (
            LedgerBackendError("x.db", "append", "disk full"),
            {"location": "x.db", "operation": "append", "cause": "disk full"},
            "ledger x.db: append failed: disk full",
        ),
        (
            LedgerReadOnlyError("x.db", "append"),
            {"location": "x.db", "operation": "append"},
            "ledger x.db is open read-only (no signing key): cannot append",
        ),
        (
            LedgerKeyMismatchError("x.db", "sha256:aa", "sha256:bb"),
            {"location": "x.db", "ledger_key_id": "sha256:aa", "key_id": "sha256:bb"},
            "ledger x.db is signed by key sha256:aa, not by key sha256:bb",
        ),
        (
            DuplicateEventError("e1", 7),
            {"event_id": "e1", "seq": 7},
            "event e1 is already recorded at seq 7 with different content",
        ),
        (
            HeadFormatError("h.json", "not JSON"),
            {"source": "h.json", "reason": "not JSON"},
            "signed head h.json: not JSON",
        ),
        (
            SigningKeyError(Path("k.pem"), "no such file"),
            {"path": Path("k.pem"), "reason": "no such file"},
            "ledger signing key k.pem: no such file",
        ),
    ],
)
def test_error_classes(error: Exception, attributes: dict[str, object], message: str) -> None:
    assert isinstance(error, ThunderlineError)
    for name, value in attributes.items():
        assert getattr(error, name) == value
    assert str(error) == message
