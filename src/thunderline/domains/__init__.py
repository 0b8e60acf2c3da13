"""thunderline.domains: the reference application and its data layer.

* :class:`Event`: a validated, frozen event with trace context in ``meta``.
* Canonical JSON (RFC 8785 style): :func:`canonicalize`.
* The event ledger: append-only, hash-chained, ECDSA-signed records on SQLite
  (default) or PostgreSQL: :func:`open_ledger`, :func:`open_async_ledger`.
* Bounded pipelines with batching and backpressure: :class:`Pipeline`.
* The five domain actors, one module each: :mod:`~thunderline.domains.gate`,
  :mod:`~thunderline.domains.flow`, :mod:`~thunderline.domains.bolt`,
  :mod:`~thunderline.domains.vault`, :mod:`~thunderline.domains.link`, under
  the application supervisor of :func:`application_spec`, or split over two
  nodes by :func:`front_spec` (Gate, Flow, Bolt) and :func:`back_spec` (Vault,
  Link).
"""

from __future__ import annotations

from thunderline._exports import publish
from thunderline.domains._app import AppConfig, AppConfigError, application, application_spec
from thunderline.domains._event import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DOMAIN_SOURCES,
    Event,
    EventProblem,
    EventValidationError,
    Priority,
    declare_source,
    declared_sources,
)
from thunderline.domains._ledger._canonical import CanonicalizationError, canonicalize, parse_json
from thunderline.domains._ledger._core import (
    AsyncLedger,
    DuplicateEventError,
    HeadFormatError,
    LedgerBackend,
    LedgerBackendError,
    LedgerConfigError,
    LedgerCorruptError,
    LedgerError,
    LedgerKeyMismatchError,
    LedgerNotFoundError,
    LedgerReadOnlyError,
    LedgerRecord,
    ProblemKind,
    SignedHead,
    VerifyReport,
    open_async_ledger,
    open_ledger,
)
from thunderline.domains._ledger._signing import (
    LedgerSigningKey,
    SigningKeyError,
    load_public_key_pem,
)
from thunderline.domains._nodes import (
    RemoteDomainError,
    RemoteLedgerError,
    WireType,
    back_spec,
    front_spec,
    remote_heartbeat,
    wire_types,
)
from thunderline.domains._pipeline import (
    Pipeline,
    PipelineOverloaded,
    PipelineSpec,
    PipelineStatistics,
    drain,
    enqueue,
    enqueue_many,
    pipeline_statistics,
    try_enqueue,
)
from thunderline.domains.flow import ShuttingDownError, VaultUnreachableError

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DOMAIN_SOURCES",
    "AppConfig",
    "AppConfigError",
    "AsyncLedger",
    "CanonicalizationError",
    "DuplicateEventError",
    "Event",
    "EventProblem",
    "EventValidationError",
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
    "LedgerSigningKey",
    "Pipeline",
    "PipelineOverloaded",
    "PipelineSpec",
    "PipelineStatistics",
    "Priority",
    "ProblemKind",
    "RemoteDomainError",
    "RemoteLedgerError",
    "ShuttingDownError",
    "SignedHead",
    "SigningKeyError",
    "VaultUnreachableError",
    "VerifyReport",
    "WireType",
    "application",
    "application_spec",
    "back_spec",
    "canonicalize",
    "declare_source",
    "declared_sources",
    "drain",
    "enqueue",
    "enqueue_many",
    "front_spec",
    "load_public_key_pem",
    "open_async_ledger",
    "open_ledger",
    "parse_json",
    "pipeline_statistics",
    "remote_heartbeat",
    "try_enqueue",
    "wire_types",
]

publish(globals(), __name__, __all__)
