"""The reference application: Gate -> Flow -> Bolt -> Vault -> Link under one supervisor.

Start order and strategy. The children start in dependency order —
Vault, Link, the saga supervisor, Bolt, Flow (with its pipelines), Gate —
so that each domain's downstream is up before it can receive work, and they
stop in reverse order, so ingress closes first and the ledger last.

The strategy is ``one_for_one`` (intensity 10 in 10 s): domains reach each
other by registered name, so a restarted domain is found again without
restarting its neighbours. Work in flight in a crashed domain fails its
callers (a ``CallError``), and the heartbeat saga retries those steps, so a
Vault or Link restart delays events rather than losing them; an event is
acknowledged only after Vault committed it. Restarting healthy domains
(``rest_for_one``) would instead throw away every event queued in Flow's
pipelines whenever Vault restarts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import attrs

import thunderline.runtime as tl
from thunderline import sagas
from thunderline.domains._common import APP, SAGAS
from thunderline.domains.bolt import bolt_spec
from thunderline.domains.flow import Route, default_routes, flow_spec
from thunderline.domains.gate import gate_spec
from thunderline.domains.link import link_spec
from thunderline.domains.vault import vault_spec

__all__ = ["AppConfig", "application", "application_spec"]


@attrs.frozen(kw_only=True)
class AppConfig:
    """Where the application keeps its data and how it routes events.

    Attributes:
        data_dir: the signing key and (by default) the SQLite ledger live here.
        ledger: a path or ``postgresql://`` URL (default ``data_dir/ledger.db``).
        ledger_schema: the PostgreSQL schema of the ledger's tables.
        sink: the JSON-lines file Link appends to (default ``data_dir/link.jsonl``;
            None for no sink file).
        routes: Flow's routes (default: each event name Bolt has a saga for, i.e.
            ``system.heartbeat``, to the bolt pipeline; see ``flow.default_routes``).
        saga_concurrency: step slots shared by all running sagas.
        saga_instrument: hooks for every saga run (e.g. telemetry's saga tracer).
    """

    data_dir: Path = attrs.field(converter=Path)
    ledger: str | None = None
    ledger_schema: str = "thunderline_ledger"
    sink: Path | None = attrs.field(default=None)
    routes: Sequence[Route] | None = None
    saga_concurrency: int | None = None
    saga_instrument: sagas.SagaInstrument | None = None

    @classmethod
    def from_env(cls) -> AppConfig:
        """``THUNDERLINE_DATA_DIR`` (default: a new temporary directory),
        ``THUNDERLINE_LEDGER`` (default: the SQLite file in the data dir) and
        ``THUNDERLINE_LEDGER_SCHEMA`` (default ``thunderline_ledger``)."""
        data_dir = os.environ.get("THUNDERLINE_DATA_DIR") or tempfile.mkdtemp(prefix="thunderline-")
        return cls(
            data_dir=Path(data_dir),
            ledger=os.environ.get("THUNDERLINE_LEDGER") or None,
            ledger_schema=os.environ.get("THUNDERLINE_LEDGER_SCHEMA") or "thunderline_ledger",
        )


def application_spec(config: AppConfig) -> tl.ChildSpec:
    """The application's top supervisor as a child spec (registered as ``thunderline.app``)."""
    data_dir = config.data_dir
    ledger = config.ledger or str(data_dir / "ledger.db")
    sink = config.sink if config.sink is not None else data_dir / "link.jsonl"
    children = [
        vault_spec(ledger, data_dir, schema=config.ledger_schema),
        link_spec(sink),
        sagas.saga_supervisor_spec(
            "sagas",
            name=SAGAS,
            max_concurrency=config.saga_concurrency,
            instrument=config.saga_instrument,
        ),
        bolt_spec(),
        flow_spec(config.routes if config.routes is not None else default_routes()),
        gate_spec(),
    ]
    return tl.supervisor_spec(
        "thunderline", children, strategy="one_for_one", intensity=10, period=10, name=APP
    )


def application() -> tl.ChildSpec:
    """The application with its configuration from the environment (for ``thunderline run``)."""
    return application_spec(AppConfig.from_env())
