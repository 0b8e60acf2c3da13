"""The Vault's event ledger: append-only, hash-chained, signed.

Open a ledger (SQLite by path, PostgreSQL by ``postgresql://`` URL), append
events in batches, verify, and keep a signed head elsewhere::

    >>> import tempfile, pathlib
    >>> from thunderline.domains._event import Event
    >>> directory = pathlib.Path(tempfile.mkdtemp())
    >>> ledger = open_ledger(directory / "ledger.db")
    >>> event = Event.new("system.heartbeat", type="heartbeat", source="gate")
    >>> [record] = ledger.append_batch([event])
    >>> record.seq
    1
    >>> ledger.verify().ok
    True
    >>> head = ledger.signed_head()
    >>> ledger.verify(head).ok
    True
    >>> ledger.close()

Record format (``ledger_version`` 1)
------------------------------------

Each record holds ``seq``, ``event_id``, ``canonical`` (the canonical JSON bytes
of :meth:`Event.to_dict <thunderline.domains._event.Event.to_dict>`, see
:mod:`thunderline.domains._ledger._canonical`), ``prev_hash``, ``event_hash``,
``event_signature``, ``key_id`` and ``ledger_version``, where:

* ``event_hash = hex(SHA-256(unhex(prev_hash) || canonical))`` -- the 32 raw
  bytes of the previous record's hash followed by the canonical bytes;
* ``prev_hash`` is the previous record's ``event_hash``; for the genesis record
  (``seq`` 0) it is :data:`ZERO_HASH` (64 zeros);
* ``event_signature`` is the DER ECDSA P-256/SHA-256 signature (RFC 6979 nonces)
  of the 32 raw bytes ``unhex(event_hash)``; since the hash covers the previous
  hash, each signature commits to the whole chain before it;
* ``key_id`` is ``sha256:`` + hex SHA-256 of the signer's DER public key.

The genesis record is the same in every version-1 ledger: ``event_id``
:data:`GENESIS_EVENT_ID`, ``canonical`` :data:`GENESIS_CANONICAL`, hence
``event_hash`` :data:`GENESIS_HASH`; its signature binds the ledger to its key.

A signed head (:class:`SignedHead`) is ``(seq, hash, key_id, signature)`` where
the signature covers :func:`head_message` ``= b"thunderline.ledger.head.v1\\0" ||
seq as 8 bytes big-endian || unhex(hash)``; the prefix keeps head signatures from
ever being mistaken for record signatures.

What verification detects (:meth:`LedgerBackend.verify`)
--------------------------------------------------------

Walking the chain from seq 0 finds, at the first bad seq: a changed byte in any
column (hash mismatch, bad signature, prev_hash mismatch, event id mismatch,
key mismatch, unsupported version), deleted records (gap), inserted records
(bad signature or prev_hash mismatch: a forger lacks the key), and reordered
records (a record chaining from another seq than its predecessor). Removing
records from the *tail*, or rewriting the whole ledger with another key, leaves
a chain that verifies on its own: that is **only** detected against a head saved
elsewhere (``verify(head)``): truncation, head mismatch, head signed by another
key. Keep heads where the writer cannot change them.

What opening for writing checks
-------------------------------

A ledger opened with its signing key (to append) is checked first, and
:class:`LedgerCorruptError` is raised, nothing written, when the check fails:
the database's own integrity check (SQLite ``PRAGMA quick_check``) and the
chain's head: the last record's seq equals the number of records minus one
(no gap), its hash recomputes from its ``prev_hash`` and bytes, its signature
verifies under the ledger's key, and its ``prev_hash`` is the hash of the
record before it. That is O(1) in records apart from SQLite's page scan; the
whole chain is checked by :meth:`LedgerBackend.verify`, which also runs the
full ``PRAGMA integrity_check`` first and reports ``database_corrupt``.

Idempotency
-----------

Event ids are unique in a ledger. Appending an event whose id is already
recorded with **identical** canonical bytes is deduplicated: no new record, the
existing record is returned in its place, so a retry after a crash (or a lost
acknowledgement) never duplicates. The same id with **different** content raises
:class:`DuplicateEventError` and the batch is not written.

Durability and threads
----------------------

:meth:`LedgerBackend.append_batch` writes a batch in one transaction and returns
only after it committed (SQLite uses ``synchronous=FULL``), so an acknowledged
append is durable and a failed one leaves no trace. Backends are thread-safe: one
connection per backend, every call serialized by a lock. From async code use
:class:`AsyncLedger`, which runs each call in a worker thread via
``anyio.to_thread.run_sync`` behind a capacity limiter of 1, so the event loop is
never blocked and calls never overlap.
"""

from __future__ import annotations

import abc
import enum
import functools
import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import attrs
from cryptography.hazmat.primitives.asymmetric import ec

from thunderline.domains._event import Event
from thunderline.domains._ledger._canonical import canonicalize, parse_json
from thunderline.domains._ledger._signing import (
    LedgerSigningKey,
    key_id_of,
    load_public_key_pem,
    verify_signature,
)
from thunderline.runtime import ThunderlineError

__all__ = [
    "GENESIS_CANONICAL",
    "GENESIS_EVENT_ID",
    "GENESIS_HASH",
    "LEDGER_VERSION",
    "ZERO_HASH",
    "AsyncLedger",
    "DuplicateEventError",
    "HeadFormatError",
    "LedgerBackend",
    "LedgerBackendError",
    "LedgerConfigError",
    "LedgerCorruptError",
    "LedgerError",
    "LedgerKeyMismatchError",
    "LedgerNotFoundError",
    "LedgerReadOnlyError",
    "LedgerRecord",
    "ProblemKind",
    "SignedHead",
    "VerifyReport",
    "compute_event_hash",
    "genesis_record",
    "head_message",
    "open_async_ledger",
    "open_ledger",
    "verify_records",
]

#: The record format written by this module.
LEDGER_VERSION = 1

#: ``prev_hash`` of the genesis record.
ZERO_HASH = "0" * 64

#: ``event_id`` of the genesis record (the nil UUID).
GENESIS_EVENT_ID = "00000000-0000-0000-0000-000000000000"

#: Canonical bytes of the genesis record.
GENESIS_CANONICAL = canonicalize(
    {"ledger": "thunderline", "ledger_version": LEDGER_VERSION, "type": "genesis"}
)

_HEAD_PREFIX = b"thunderline.ledger.head.v1\x00"

_T = TypeVar("_T")


def compute_event_hash(prev_hash: str, canonical: bytes) -> str:
    """Return ``hex(SHA-256(unhex(prev_hash) || canonical))``.

    Args:
        prev_hash: The previous record's hash, 64 lowercase hex digits.
        canonical: The canonical JSON bytes of this record's event.

    Returns:
        The hash, 64 lowercase hex digits.

    Raises:
        ValueError: ``prev_hash`` is not hex.

    .. versionadded:: 0.1
    """
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical).hexdigest()


#: ``event_hash`` of the genesis record.
GENESIS_HASH = compute_event_hash(ZERO_HASH, GENESIS_CANONICAL)


def head_message(seq: int, head_hash: str) -> bytes:
    """Return the bytes a :class:`SignedHead` signature covers.

    ``b"thunderline.ledger.head.v1\\0" || seq (8 bytes, big-endian) || unhex(hash)``.

    .. versionadded:: 0.1
    """
    return _HEAD_PREFIX + seq.to_bytes(8, "big") + bytes.fromhex(head_hash)


# --------------------------------------------------------------------------- errors


class LedgerError(ThunderlineError):
    """Base class of the ledger's errors.

    .. versionadded:: 0.1
    """


class LedgerNotFoundError(LedgerError, FileNotFoundError):
    """There is no ledger at the location (and creating one was not asked for).

    Attributes:
        location: The path or URL (password removed).
        reason: What was missing.

    .. versionadded:: 0.1
    """

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"no ledger at {location}: {reason}")

    def __str__(self) -> str:
        return str(self.args[0])


class LedgerConfigError(LedgerError, ValueError):
    """A ledger location or option is invalid.

    Attributes:
        option: The option at fault (``path_or_url``, ``data_dir``, ``schema`` ...).
        expected: What it accepts.
        received: What it got.

    .. versionadded:: 0.1
    """

    def __init__(self, option: str, expected: str, received: object) -> None:
        self.option = option
        self.expected = expected
        self.received = received
        super().__init__(f"ledger option {option}: expected {expected}, got {received!r}")


class LedgerBackendError(LedgerError, OSError):
    """The database failed (cannot open, not a database, connection lost ...).

    Attributes:
        location: The path or URL (password removed).
        operation: What the ledger was doing.
        cause: The database's message.

    .. versionadded:: 0.1
    """

    def __init__(self, location: str, operation: str, cause: str) -> None:
        self.location = location
        self.operation = operation
        self.cause = cause
        super().__init__(f"ledger {location}: {operation} failed: {cause}")

    def __str__(self) -> str:
        return str(self.args[0])


class LedgerCorruptError(LedgerError, ValueError):
    """The ledger fails the checks made before appending; nothing is written to it.

    Attributes:
        location: The path or URL (password removed).
        reason: What failed (the database's integrity check, or the chain's head).

    .. versionadded:: 0.1
    """

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(
            f"ledger {location} is damaged, refusing to append: {reason} "
            f"(see 'thunderline ledger verify {location}')"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class LedgerKeyMismatchError(LedgerError, ValueError):
    """The signing key (or a trusted key) is not the key the ledger was created with.

    Attributes:
        location: The ledger.
        ledger_key_id: The key id stored in the ledger.
        key_id: The key id offered.

    .. versionadded:: 0.1
    """

    def __init__(self, location: str, ledger_key_id: str, key_id: str) -> None:
        self.location = location
        self.ledger_key_id = ledger_key_id
        self.key_id = key_id
        super().__init__(f"ledger {location} is signed by key {ledger_key_id}, not by key {key_id}")


class LedgerReadOnlyError(LedgerError, PermissionError):
    """A write or a head signature was asked of a ledger opened without its signing key.

    Attributes:
        location: The ledger.
        operation: What was attempted.

    .. versionadded:: 0.1
    """

    def __init__(self, location: str, operation: str) -> None:
        self.location = location
        self.operation = operation
        super().__init__(
            f"ledger {location} is open read-only (no signing key): cannot {operation}"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class DuplicateEventError(LedgerError, ValueError):
    """An event id is already recorded with different content; the batch was not written.

    Attributes:
        event_id: The event id.
        seq: The seq of the existing record, or ``None`` when the clash is between
            two events of the same batch.

    .. versionadded:: 0.1
    """

    def __init__(self, event_id: str, seq: int | None) -> None:
        self.event_id = event_id
        self.seq = seq
        where = f"at seq {seq}" if seq is not None else "earlier in the same batch"
        super().__init__(f"event {event_id} is already recorded {where} with different content")


class HeadFormatError(LedgerError, ValueError):
    """A signed head file or text is not a valid head.

    Attributes:
        source: Where the head came from (a file name or ``<text>``).
        reason: What is wrong.

    .. versionadded:: 0.1
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"signed head {source}: {reason}")


# --------------------------------------------------------------------------- records


@attrs.frozen
class LedgerRecord:
    """One stored ledger record.

    Attributes:
        seq: Position in the chain, 0 for genesis, without gaps.
        event_id: The event's UUID string (:data:`GENESIS_EVENT_ID` for genesis).
        canonical: Canonical JSON bytes of the event.
        prev_hash: The previous record's ``event_hash`` (hex).
        event_hash: ``hex(SHA-256(unhex(prev_hash) || canonical))``.
        event_signature: DER ECDSA P-256 signature of ``unhex(event_hash)``.
        key_id: ``sha256:`` fingerprint of the signing public key.
        ledger_version: The record format (:data:`LEDGER_VERSION`).

    .. versionadded:: 0.1
    """

    seq: int
    event_id: str
    canonical: bytes
    prev_hash: str
    event_hash: str
    event_signature: bytes
    key_id: str
    ledger_version: int

    @property
    def is_genesis(self) -> bool:
        """Whether this is the genesis record (seq 0)."""
        return self.seq == 0

    def row(self) -> tuple[object, ...]:
        """The stored columns, in :data:`COLUMNS` order (what the backends insert)."""
        return tuple(getattr(self, column) for column in COLUMNS)

    def event(self) -> Event:
        """Parse and validate the recorded event.

        Raises:
            EventValidationError: For the genesis record or a corrupt record.

        .. versionadded:: 0.1
        """
        return Event.from_json(self.canonical)

    def to_dict(self) -> dict[str, Any]:
        """Return the record as JSON-ready data (bytes as text/hex).

        .. versionadded:: 0.1
        """
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "canonical": self.canonical.decode("utf-8", "replace"),
            "prev_hash": self.prev_hash,
            "event_hash": self.event_hash,
            "event_signature": self.event_signature.hex(),
            "key_id": self.key_id,
            "ledger_version": self.ledger_version,
        }


def _is_hash(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


@attrs.frozen
class SignedHead:
    """The latest (seq, hash) of a ledger, signed, to be kept where the writer cannot change it.

    Attributes:
        seq: Seq of the last record.
        hash: ``event_hash`` of the last record.
        key_id: The signing key's id.
        signature: DER ECDSA P-256 signature of :func:`head_message` ``(seq, hash)``.
        ledger_version: The record format.

    .. versionadded:: 0.1
    """

    seq: int
    hash: str
    key_id: str
    signature: bytes
    ledger_version: int = LEDGER_VERSION

    def verify_signature(self, public_key: ec.EllipticCurvePublicKey) -> bool:
        """Return whether the signature is valid under ``public_key``.

        .. versionadded:: 0.1
        """
        return verify_signature(public_key, self.signature, head_message(self.seq, self.hash))

    def to_dict(self) -> dict[str, Any]:
        """Return the head as a JSON object (signature in hex).

        .. versionadded:: 0.1
        """
        return {
            "ledger_version": self.ledger_version,
            "seq": self.seq,
            "hash": self.hash,
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    def to_json(self) -> str:
        """Return the head as canonical JSON text (one line, no newline).

        .. versionadded:: 0.1
        """
        return canonicalize(self.to_dict()).decode("ascii")

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "<text>") -> SignedHead:
        """Parse a head written by :meth:`to_json`.

        Args:
            text: The JSON text.
            source: Named in errors (for example the file name).

        Returns:
            The head (its signature is not checked here).

        Raises:
            HeadFormatError: The text is not JSON or a field is missing or malformed.

        .. versionadded:: 0.1
        """
        try:
            data = parse_json(text)
        except ValueError as exc:
            raise HeadFormatError(source, f"not JSON ({exc})") from None
        if not isinstance(data, Mapping):
            raise HeadFormatError(source, "expected a JSON object")
        expected = {"ledger_version", "seq", "hash", "key_id", "signature"}
        if set(data) != expected:
            raise HeadFormatError(
                source, f"expected exactly the keys {sorted(expected)}, got {sorted(data)}"
            )
        seq, head_hash, key_id, signature, version = (
            data["seq"],
            data["hash"],
            data["key_id"],
            data["signature"],
            data["ledger_version"],
        )
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise HeadFormatError(source, f"seq: expected an int >= 0, got {seq!r}")
        if not _is_hash(head_hash):
            raise HeadFormatError(
                source, f"hash: expected 64 lowercase hex digits, got {head_hash!r}"
            )
        if not isinstance(key_id, str):
            raise HeadFormatError(source, f"key_id: expected a string, got {key_id!r}")
        if version != LEDGER_VERSION:
            raise HeadFormatError(
                source, f"ledger_version: expected {LEDGER_VERSION}, got {version!r}"
            )
        try:
            raw_signature = bytes.fromhex(signature) if isinstance(signature, str) else None
        except ValueError:
            raw_signature = None
        if not raw_signature:
            raise HeadFormatError(source, f"signature: expected hex, got {signature!r}")
        return cls(seq=seq, hash=head_hash, key_id=key_id, signature=raw_signature)

    @classmethod
    def read(cls, path: Path | str) -> SignedHead:
        """Read a head file written with :meth:`write`.

        Raises:
            HeadFormatError: The file cannot be read or is not a head.

        .. versionadded:: 0.1
        """
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise HeadFormatError(str(path), exc.strerror or str(exc)) from None
        return cls.from_json(text, source=str(path))

    def write(self, path: Path | str) -> None:
        """Write the head to ``path`` (its JSON and a newline).

        .. versionadded:: 0.1
        """
        Path(path).write_text(self.to_json() + "\n", "ascii")


class ProblemKind(enum.Enum):
    """What :meth:`LedgerBackend.verify` found wrong at the first bad seq.

    .. versionadded:: 0.1
    """

    EMPTY = "empty"
    """No records at all, not even genesis."""
    BAD_GENESIS = "bad_genesis"
    """Seq 0 is not the genesis record."""
    GAP = "gap"
    """A seq is missing (a record was deleted or renumbered)."""
    REORDER = "reorder"
    """A record chains from another seq than its predecessor."""
    PREV_HASH_MISMATCH = "prev_hash_mismatch"
    """``prev_hash`` is not the previous record's hash."""
    HASH_MISMATCH = "hash_mismatch"
    """``event_hash`` is not the hash of ``prev_hash`` and ``canonical``."""
    BAD_SIGNATURE = "bad_signature"
    """``event_signature`` does not verify."""
    EVENT_ID_MISMATCH = "event_id_mismatch"
    """``event_id`` differs from the id in ``canonical``, or ``canonical`` is malformed."""
    KEY_MISMATCH = "key_mismatch"
    """``key_id`` is not the ledger's (or the trusted) key."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """``ledger_version`` is not one this code reads."""
    TRUNCATED = "truncated"
    """The ledger ends before the saved head."""
    HEAD_MISMATCH = "head_mismatch"
    """The record at the saved head's seq has another hash (the ledger was rewritten)."""
    BAD_HEAD_SIGNATURE = "bad_head_signature"
    """The saved head's signature does not verify, or it names another key."""
    DATABASE_CORRUPT = "database_corrupt"
    """The database's own integrity check failed (e.g. SQLite pages overwritten)."""


@attrs.frozen
class VerifyReport:
    """The result of verifying a ledger.

    Attributes:
        ok: Whether everything verified.
        records: How many records were checked and found good.
        last_seq: Seq of the last good record (``None`` if none).
        last_hash: Hash of the last good record (``None`` if none).
        first_bad_seq: The first seq at fault (``None`` when ``ok``).
        problem: What is wrong there (``None`` when ``ok``).
        detail: A sentence naming the seq and the problem.
        head_checked: Whether a saved head was checked.

    .. versionadded:: 0.1
    """

    ok: bool
    records: int
    last_seq: int | None
    last_hash: str | None
    first_bad_seq: int | None = None
    problem: ProblemKind | None = None
    detail: str = ""
    head_checked: bool = False

    def __str__(self) -> str:
        if self.ok:
            head = ", matches the saved head" if self.head_checked else ""
            return (
                f"ok: {self.records} records verified, head seq {self.last_seq} "
                f"hash {self.last_hash}{head}"
            )
        assert self.problem is not None
        if self.first_bad_seq is None:
            return f"{self.problem.value}: {self.detail}"
        return f"seq {self.first_bad_seq}: {self.problem.value}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON object.

        .. versionadded:: 0.1
        """
        return {
            "ok": self.ok,
            "records": self.records,
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "first_bad_seq": self.first_bad_seq,
            "problem": None if self.problem is None else self.problem.value,
            "detail": self.detail,
            "head_checked": self.head_checked,
        }


def _event_id_problem(record: LedgerRecord) -> str | None:
    if record.seq == 0:
        if record.event_id != GENESIS_EVENT_ID or record.canonical != GENESIS_CANONICAL:
            return "seq 0 is not the genesis record"
        return None
    try:
        data = parse_json(record.canonical)
        is_canonical = canonicalize(data) == record.canonical
    except ValueError as exc:
        return f"canonical bytes are not canonical JSON ({exc})"
    if not is_canonical:
        return "canonical bytes are not in canonical form"
    if not isinstance(data, dict) or data.get("id") != record.event_id:
        inner = data.get("id") if isinstance(data, dict) else None
        return f"event_id {record.event_id!r} differs from the event's id {inner!r}"
    return None


def verify_records(
    records: Iterable[LedgerRecord],
    public_key: ec.EllipticCurvePublicKey,
    *,
    head: SignedHead | None = None,
    seq_of_hash: Callable[[str], int | None] | None = None,
) -> VerifyReport:
    """Verify a chain of records (in stored seq order) and optionally a saved head.

    This is the whole verification algorithm; backends feed it their rows.

    Args:
        records: The records in ascending ``seq`` order, as stored.
        public_key: The key every signature must verify under.
        head: A saved head; when given, the ledger must reach its seq with the
            same hash, and the head must be signed by ``public_key``.
        seq_of_hash: Finds the seq of the record with a given ``event_hash``,
            to tell a reordering from a corrupted ``prev_hash``; ``None``
            reports every break as a prev_hash mismatch.

    Returns:
        The report: ok, or the first bad seq and what is wrong there.

    .. versionadded:: 0.1
    """
    key_id = key_id_of(public_key)
    prev_hash = ZERO_HASH
    count = 0
    last_seq: int | None = None
    last_hash: str | None = None
    hash_at_head: str | None = None

    def bad(seq: int, problem: ProblemKind, detail: str) -> VerifyReport:
        return VerifyReport(
            ok=False,
            records=count,
            last_seq=last_seq,
            last_hash=last_hash,
            first_bad_seq=seq,
            problem=problem,
            detail=detail,
            head_checked=head is not None,
        )

    for seq, record in enumerate(records):
        if record.seq != seq:
            return bad(seq, ProblemKind.GAP, f"expected seq {seq}, found seq {record.seq}")
        if record.ledger_version != LEDGER_VERSION:
            return bad(
                seq,
                ProblemKind.UNSUPPORTED_VERSION,
                f"ledger_version is {record.ledger_version!r}, expected {LEDGER_VERSION}",
            )
        if record.key_id != key_id:
            return bad(
                seq,
                ProblemKind.KEY_MISMATCH,
                f"key_id is {record.key_id!r}, expected {key_id}",
            )
        if record.prev_hash != prev_hash:
            origin = seq_of_hash(record.prev_hash) if seq_of_hash is not None else None
            if origin is not None and origin != seq - 1:
                return bad(
                    seq,
                    ProblemKind.REORDER,
                    f"record chains from seq {origin}, not from seq {seq - 1}: "
                    "records are out of order",
                )
            return bad(
                seq,
                ProblemKind.PREV_HASH_MISMATCH,
                f"prev_hash {record.prev_hash!r} is not the hash of seq {seq - 1} ({prev_hash})"
                if seq
                else f"prev_hash {record.prev_hash!r} is not the genesis prev_hash {ZERO_HASH}",
            )
        recomputed = compute_event_hash(prev_hash, record.canonical)
        if record.event_hash != recomputed:
            return bad(
                seq,
                ProblemKind.HASH_MISMATCH,
                f"event_hash {record.event_hash!r} differs from the recomputed {recomputed}",
            )
        if not verify_signature(public_key, record.event_signature, bytes.fromhex(recomputed)):
            return bad(
                seq, ProblemKind.BAD_SIGNATURE, f"event_signature does not verify under {key_id}"
            )
        problem = _event_id_problem(record)
        if problem is not None:
            kind = ProblemKind.BAD_GENESIS if seq == 0 else ProblemKind.EVENT_ID_MISMATCH
            return bad(seq, kind, problem)
        if head is not None and seq == head.seq:
            hash_at_head = record.event_hash
        prev_hash = record.event_hash
        last_seq, last_hash = seq, record.event_hash
        count += 1

    if count == 0:
        return bad(0, ProblemKind.EMPTY, "the ledger has no records, not even genesis")
    if head is not None:
        if head.key_id != key_id:
            return bad(
                head.seq,
                ProblemKind.BAD_HEAD_SIGNATURE,
                f"the saved head is signed by key {head.key_id}, the ledger by {key_id}",
            )
        if not head.verify_signature(public_key):
            return bad(
                head.seq,
                ProblemKind.BAD_HEAD_SIGNATURE,
                "the saved head's signature does not verify",
            )
        assert last_seq is not None
        if last_seq < head.seq:
            return bad(
                last_seq + 1,
                ProblemKind.TRUNCATED,
                f"the ledger ends at seq {last_seq} but the saved head is at seq {head.seq}: "
                f"records {last_seq + 1}..{head.seq} are missing",
            )
        if hash_at_head != head.hash:
            return bad(
                head.seq,
                ProblemKind.HEAD_MISMATCH,
                f"the saved head has hash {head.hash} at seq {head.seq}, the ledger has "
                f"{hash_at_head}: the ledger was rewritten",
            )
    return VerifyReport(
        ok=True,
        records=count,
        last_seq=last_seq,
        last_hash=last_hash,
        head_checked=head is not None,
    )


# --------------------------------------------------------------------------- backends


def genesis_record(key: LedgerSigningKey) -> LedgerRecord:
    """Return the genesis record (seq 0) signed with ``key``.

    .. versionadded:: 0.1
    """
    return LedgerRecord(
        seq=0,
        event_id=GENESIS_EVENT_ID,
        canonical=GENESIS_CANONICAL,
        prev_hash=ZERO_HASH,
        event_hash=GENESIS_HASH,
        event_signature=key.sign(bytes.fromhex(GENESIS_HASH)),
        key_id=key.key_id,
        ledger_version=LEDGER_VERSION,
    )


class LedgerBackend(abc.ABC):
    """A ledger store. Subclasses: the SQLite and PostgreSQL backends.

    Every public method is thread-safe (calls are serialized by a lock on the one
    connection) and blocking; from async code use :class:`AsyncLedger`.

    Attributes:
        location: The path or URL (without password).
        public_key: The ledger's public key (from the store's metadata).
        key_id: Its ``sha256:`` fingerprint.

    .. versionadded:: 0.1
    """

    location: str
    public_key: ec.EllipticCurvePublicKey
    key_id: str

    def __init__(self, location: str, signing_key: LedgerSigningKey | None) -> None:
        self.location = location
        self._signing_key = signing_key
        self._lock = threading.RLock()
        self._closed = False

    def __enter__(self) -> LedgerBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def read_only(self) -> bool:
        """Whether the ledger was opened without its signing key."""
        return self._signing_key is None

    def _require_key(self, operation: str) -> LedgerSigningKey:
        if self._signing_key is None:
            raise LedgerReadOnlyError(self.location, operation)
        return self._signing_key

    def _build_batch(
        self,
        key: LedgerSigningKey,
        tail: LedgerRecord,
        prepared: Sequence[tuple[str, bytes]],
        existing: Mapping[str, LedgerRecord],
    ) -> tuple[list[LedgerRecord], list[LedgerRecord]]:
        """Chain, hash and sign new records; return (records to insert, result per event)."""
        new: list[LedgerRecord] = []
        result: list[LedgerRecord] = []
        in_batch: dict[str, LedgerRecord] = {}
        prev = tail
        for event_id, canonical in prepared:
            known = existing.get(event_id)
            if known is not None:
                if known.canonical != canonical:
                    raise DuplicateEventError(event_id, known.seq)
                result.append(known)
                continue
            known = in_batch.get(event_id)
            if known is not None:
                if known.canonical != canonical:
                    raise DuplicateEventError(event_id, None)
                result.append(known)
                continue
            event_hash = compute_event_hash(prev.event_hash, canonical)
            record = LedgerRecord(
                seq=prev.seq + 1,
                event_id=event_id,
                canonical=canonical,
                prev_hash=prev.event_hash,
                event_hash=event_hash,
                event_signature=key.sign(bytes.fromhex(event_hash)),
                key_id=key.key_id,
                ledger_version=LEDGER_VERSION,
            )
            new.append(record)
            in_batch[event_id] = record
            result.append(record)
            prev = record
        return new, result

    def append_batch(self, events: Sequence[Event]) -> list[LedgerRecord]:
        """Append events in one transaction; return one record per event, in order.

        Returns only after the transaction committed. Events already recorded
        with identical content are deduplicated (their existing record is
        returned); see the module docstring.

        Args:
            events: The events (may be empty).

        Returns:
            The record of each event, new or existing.

        Raises:
            DuplicateEventError: An id is recorded (or repeated in the batch)
                with different content; nothing was written.
            LedgerReadOnlyError: The ledger was opened without its signing key.
            LedgerBackendError: The database failed; nothing was written.

        .. versionadded:: 0.1
        """
        key = self._require_key("append")
        prepared = [(str(event.id), event.canonical_bytes()) for event in events]
        if not prepared:
            return []
        with self._lock:
            self._check_open()
            return self._append(key, prepared)

    def append(self, event: Event) -> LedgerRecord:
        """Append one event (a batch of one); see :meth:`append_batch`.

        .. versionadded:: 0.1
        """
        return self.append_batch([event])[0]

    def head(self) -> LedgerRecord:
        """Return the last record (genesis for an empty ledger).

        Raises:
            LedgerNotFoundError: The store has no records at all.

        .. versionadded:: 0.1
        """
        with self._lock:
            self._check_open()
            tail = self._tail()
        if tail is None:
            raise LedgerNotFoundError(self.location, "no records, not even genesis")
        return tail

    def read(self, from_seq: int = 0, *, limit: int | None = None) -> list[LedgerRecord]:
        """Return the records with ``seq >= from_seq`` in seq order, at most ``limit``.

        .. versionadded:: 0.1
        """
        with self._lock:
            self._check_open()
            return list(self._rows(from_seq, limit))

    def signed_head(self) -> SignedHead:
        """Sign the current head (seq, hash) with the ledger's key.

        Raises:
            LedgerReadOnlyError: The ledger was opened without its signing key.

        .. versionadded:: 0.1
        """
        key = self._require_key("sign the head")
        tail = self.head()
        return SignedHead(
            seq=tail.seq,
            hash=tail.event_hash,
            key_id=key.key_id,
            signature=key.sign(head_message(tail.seq, tail.event_hash)),
        )

    def verify(
        self,
        head: SignedHead | None = None,
        *,
        public_key: ec.EllipticCurvePublicKey | None = None,
    ) -> VerifyReport:
        """Verify the whole chain, every signature and, if given, a saved head.

        Args:
            head: A head saved earlier (:meth:`signed_head`); without one, tail
                truncation and wholesale rewrites are undetectable.
            public_key: A trusted public key held outside the ledger; every
                signature must verify under it. Default: the key stored in the
                ledger's metadata.

        Returns:
            The report (ok, or the first bad seq and the problem).

        .. versionadded:: 0.1
        """
        key = self.public_key if public_key is None else public_key
        with self._lock:
            self._check_open()
            damage = self._integrity_problem(quick=False)
            if damage is not None:
                return VerifyReport(
                    ok=False,
                    records=0,
                    last_seq=None,
                    last_hash=None,
                    problem=ProblemKind.DATABASE_CORRUPT,
                    detail=f"the database's integrity check failed: {damage}",
                    head_checked=head is not None,
                )
            return verify_records(
                self._rows(0, None), key, head=head, seq_of_hash=self._seq_of_hash
            )

    def close(self) -> None:
        """Close the connection; idempotent.

        .. versionadded:: 0.1
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close()

    def _check_open(self) -> None:
        if self._closed:
            raise LedgerBackendError(self.location, "use", "the ledger is closed")

    def _check_before_append(self) -> None:
        """Raise :class:`LedgerCorruptError` unless the database and the chain's head are sound.

        Called by the backends when a ledger is opened with its signing key;
        see "What opening for writing checks" in the module docstring.
        """
        damage = self._integrity_problem(quick=True)
        if damage is not None:
            raise LedgerCorruptError(self.location, f"database integrity check failed: {damage}")
        problem = self._head_problem()
        if problem is not None:
            raise LedgerCorruptError(self.location, problem)

    def _head_problem(self) -> str | None:
        tail = self._tail()
        if tail is None:
            return "no records, not even genesis"
        count = self._count()
        if tail.seq != count - 1:
            return f"the last record has seq {tail.seq} but the ledger holds {count} records"
        if tail.key_id != self.key_id:
            return f"the last record (seq {tail.seq}) names key {tail.key_id!r}, not {self.key_id}"
        if not (_is_hash(tail.prev_hash) and _is_hash(tail.event_hash)):
            return f"the last record (seq {tail.seq}) has a malformed hash"
        recomputed = compute_event_hash(tail.prev_hash, tail.canonical)
        if recomputed != tail.event_hash:
            return f"the last record's hash (seq {tail.seq}) does not match its bytes"
        if not verify_signature(self.public_key, tail.event_signature, bytes.fromhex(recomputed)):
            return f"the last record's signature (seq {tail.seq}) does not verify"
        if tail.seq == 0:
            if tail.event_hash != GENESIS_HASH:
                return "seq 0 is not the genesis record"
            return None
        before = list(self._rows(tail.seq - 1, 1))
        if not before or before[0].seq != tail.seq - 1:
            return f"the record before the last (seq {tail.seq - 1}) is missing"
        if before[0].event_hash != tail.prev_hash:
            return f"the last record (seq {tail.seq}) does not chain from seq {tail.seq - 1}"
        return None

    def _integrity_problem(self, *, quick: bool) -> str | None:
        """The database's own integrity check: None when sound (default: no such check)."""
        return None

    @abc.abstractmethod
    def _count(self) -> int:
        """Return the number of stored records."""

    @abc.abstractmethod
    def _append(
        self, key: LedgerSigningKey, prepared: Sequence[tuple[str, bytes]]
    ) -> list[LedgerRecord]:
        """In one transaction holding the write lock: read tail and known ids, build, insert."""

    @abc.abstractmethod
    def _tail(self) -> LedgerRecord | None:
        """Return the record with the highest seq."""

    @abc.abstractmethod
    def _rows(self, from_seq: int, limit: int | None) -> Iterator[LedgerRecord]:
        """Yield stored records in seq order (via :func:`record_from_row`)."""

    @abc.abstractmethod
    def _seq_of_hash(self, event_hash: str) -> int | None:
        """Return the seq of a record with this event_hash, if any."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Close the connection."""

    @abc.abstractmethod
    def _meta(self) -> dict[str, str]:
        """Return the ledger's metadata table as a dict."""

    def _adopt_public_key(self, signing_key: LedgerSigningKey | None) -> None:
        """Load the ledger's public key from its metadata and check the signing key matches.

        Raises:
            LedgerBackendError: the stored public key is unreadable.
            LedgerKeyMismatchError: ``signing_key`` is not the ledger's key.
        """
        try:
            self.public_key = load_public_key_pem(self._meta().get("public_key_pem", ""))
        except ValueError as exc:
            raise LedgerBackendError(self.location, "read the public key", str(exc)) from None
        self.key_id = key_id_of(self.public_key)
        if signing_key is not None and signing_key.key_id != self.key_id:
            raise LedgerKeyMismatchError(self.location, self.key_id, signing_key.key_id)


def _text(value: object) -> str:
    """Coerce a column read from a possibly tampered store to text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return repr(value)


def _blob(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return repr(value).encode()


def _int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return -1


def record_from_row(row: Sequence[object]) -> LedgerRecord:
    """Build a record from a stored row, coercing tampered column types.

    Text columns that are not valid UTF-8 decode with replacement characters and
    non-integer numbers become ``-1``, so verification reports them instead of
    crashing.
    """
    seq, event_id, canonical, prev_hash, event_hash, signature, key_id, version = row
    return LedgerRecord(
        seq=_int(seq),
        event_id=_text(event_id),
        canonical=_blob(canonical),
        prev_hash=_text(prev_hash),
        event_hash=_text(event_hash),
        event_signature=_blob(signature),
        key_id=_text(key_id),
        ledger_version=_int(version),
    )


#: Column order of every SELECT and INSERT.
COLUMNS = (
    "seq",
    "event_id",
    "canonical",
    "prev_hash",
    "event_hash",
    "event_signature",
    "key_id",
    "ledger_version",
)


def _is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def open_ledger(
    path_or_url: str | Path,
    *,
    data_dir: str | Path | None = None,
    create: bool = True,
    read_only: bool = False,
    schema: str = "thunderline_ledger",
) -> LedgerBackend:
    """Open (or create) a ledger; the backend is chosen from ``path_or_url``.

    ``postgresql://`` or ``postgres://`` URLs select PostgreSQL (psycopg 3);
    anything else is a SQLite file path.

    Args:
        path_or_url: SQLite file path or PostgreSQL URL.
        data_dir: The directory holding the signing key (created ``0700`` with a
            ``0600`` key on first start). Default for SQLite: the database
            file's directory. Required for PostgreSQL unless ``read_only``.
        create: Create the ledger (and key) when missing. When false a missing
            ledger or key raises.
        read_only: Open without the signing key, for verification and reads; a
            missing ledger raises, nothing is created.
        schema: PostgreSQL schema holding the tables (ignored for SQLite).

    Returns:
        The backend.

    Raises:
        LedgerConfigError: An invalid option.
        LedgerNotFoundError: No ledger there and ``create`` is false or ``read_only``.
        SigningKeyError: The key is missing (``create`` false), unreadable or too open.
        LedgerKeyMismatchError: The key in ``data_dir`` is not the ledger's.
        LedgerBackendError: The database cannot be opened.

    .. versionadded:: 0.1
    """
    target = str(path_or_url)
    if not target:
        raise LedgerConfigError("path_or_url", "a SQLite file path or a postgresql:// URL", target)
    if _is_postgres(target):
        from thunderline.domains._ledger._postgres import PostgresLedger

        if data_dir is None and not read_only:
            raise LedgerConfigError(
                "data_dir", "the directory of the signing key (required for PostgreSQL)", None
            )
        return PostgresLedger.open(
            target, data_dir=data_dir, create=create, read_only=read_only, schema=schema
        )
    if "://" in target:
        raise LedgerConfigError("path_or_url", "a SQLite file path or a postgresql:// URL", target)
    from thunderline.domains._ledger._sqlite import SqliteLedger

    path = Path(target)
    return SqliteLedger.open(
        path,
        data_dir=path.parent if data_dir is None else data_dir,
        create=create,
        read_only=read_only,
    )


def load_signing_key(
    data_dir: str | Path | None, *, create: bool, read_only: bool
) -> LedgerSigningKey | None:
    """Return the key a backend signs with (``None`` when read-only)."""
    if read_only or data_dir is None:
        return None
    if create:
        return LedgerSigningKey.load_or_create(data_dir)
    return LedgerSigningKey.load(data_dir)


class AsyncLedger:
    """Async face of a :class:`LedgerBackend`: each call runs in a worker thread.

    Calls go through ``anyio.to_thread.run_sync`` behind a capacity limiter of 1,
    so there is one database call at a time and the event loop never blocks.
    The worker call is not abandoned on cancellation: once started, an append
    finishes (commits or fails) before the cancellation is delivered, so a
    cancelled caller may have appended; retrying is safe (idempotent append).

    Works on both anyio backends (asyncio and trio).

    .. versionadded:: 0.1
    """

    def __init__(self, backend: LedgerBackend) -> None:
        """Wrap an open backend (see :func:`open_async_ledger`)."""
        self.backend = backend
        self._limiter = anyio.CapacityLimiter(1)

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._limiter)

    async def __aenter__(self) -> AsyncLedger:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def append_batch(self, events: Sequence[Event]) -> list[LedgerRecord]:
        """Append events in one committed transaction; see :meth:`LedgerBackend.append_batch`."""
        return await self._run(self.backend.append_batch, list(events))

    async def append(self, event: Event) -> LedgerRecord:
        """Append one event; see :meth:`LedgerBackend.append`."""
        return await self._run(self.backend.append, event)

    async def head(self) -> LedgerRecord:
        """Return the last record; see :meth:`LedgerBackend.head`."""
        return await self._run(self.backend.head)

    async def read(self, from_seq: int = 0, *, limit: int | None = None) -> list[LedgerRecord]:
        """Return records from ``from_seq``; see :meth:`LedgerBackend.read`."""
        return await self._run(functools.partial(self.backend.read, from_seq, limit=limit))

    async def signed_head(self) -> SignedHead:
        """Sign the current head; see :meth:`LedgerBackend.signed_head`."""
        return await self._run(self.backend.signed_head)

    async def verify(self, head: SignedHead | None = None) -> VerifyReport:
        """Verify the ledger; see :meth:`LedgerBackend.verify`."""
        return await self._run(self.backend.verify, head)

    async def aclose(self) -> None:
        """Close the backend."""
        await self._run(self.backend.close)


async def open_async_ledger(
    path_or_url: str | Path,
    *,
    data_dir: str | Path | None = None,
    create: bool = True,
    read_only: bool = False,
    schema: str = "thunderline_ledger",
) -> AsyncLedger:
    """Open a ledger in a worker thread and wrap it in :class:`AsyncLedger`.

    Takes the arguments of :func:`open_ledger` and raises its errors.

    .. versionadded:: 0.1
    """
    backend = await anyio.to_thread.run_sync(
        functools.partial(
            open_ledger,
            path_or_url,
            data_dir=data_dir,
            create=create,
            read_only=read_only,
            schema=schema,
        )
    )
    return AsyncLedger(backend)
