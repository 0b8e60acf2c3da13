"""The reference application: Gate -> Flow -> Vault, then Bolt and Link, under one supervisor.

The delivery contract (see ``docs/durability.md``): :func:`gate.publish
<thunderline.domains.gate.publish>` and :func:`flow.publish
<thunderline.domains.flow.publish>` return only once the event is committed
in the ledger; Flow then hands it to Bolt's pipeline (its saga), and Link
relays every committed record, in ledger order, from a durable cursor.

Start order and strategy. The children start in dependency order —
Vault, Link, the saga supervisor, Bolt, Flow (with its pipelines) — so that
each domain's downstream is up before it can receive work, and they stop in
reverse order: Flow first, which drains (refuses new events, commits what it
accepted, waits until its pipelines processed everything), then Link, which
delivers every committed record before it closes, and the ledger last.

The strategy is ``one_for_one`` (intensity 10 in 10 s): domains reach each
other by registered name, so a restarted domain is found again without
restarting its neighbours. Flow resends a batch whose Vault died (the ledger
deduplicates by event id), Link catches up from its cursor when it restarts,
and the heartbeat saga retries steps whose domain was restarting.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

import thunderline.runtime as tl
from thunderline import sagas
from thunderline.domains._common import APP, SAGAS, VAULT
from thunderline.domains.bolt import DEFAULT_SAGAS, EventJournalCodec, bolt_spec
from thunderline.domains.flow import Route, default_routes, flow_spec
from thunderline.domains.link import link_spec
from thunderline.domains.vault import vault_spec

__all__ = ["AppConfig", "AppConfigError", "application", "application_spec"]


class AppConfigError(tl.ThunderlineError, ValueError):
    """An environment variable configuring the application has an unusable value."""

    def __init__(self, variable: str, expected: str, received: str) -> None:
        self.variable = variable
        super().__init__(f"{variable} must be {expected}, got {received!r}")


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
        saga_instrument: hooks for every saga run (e.g. ``bolt.saga_tracer()``: the
            saga spans with Bolt's names, in each event's trace).
        saga_journal: where the saga supervisor journals Bolt's sagas, a path or
            ``postgresql://`` URL (default ``data_dir/sagas.db``); unfinished
            runs are recovered when the application starts.
        shutdown_timeout: seconds the drain at shutdown may take (Flow's
            commit and pipelines, then Link's delivery); what is left is logged.
    """

    data_dir: Path = attrs.field(converter=Path)
    ledger: str | None = None
    ledger_schema: str = "thunderline_ledger"
    sink: Path | None = attrs.field(default=None)
    routes: Sequence[Route] | None = None
    saga_concurrency: int | None = None
    saga_instrument: sagas.SagaInstrument | None = None
    saga_journal: str | None = None
    shutdown_timeout: float = 30.0

    @classmethod
    def from_env(cls) -> AppConfig:
        """``THUNDERLINE_DATA_DIR`` (default: a new temporary directory),
        ``THUNDERLINE_LEDGER`` (default: the SQLite file in the data dir),
        ``THUNDERLINE_LEDGER_SCHEMA`` (PostgreSQL only, default ``thunderline_ledger``)
        and ``THUNDERLINE_SHUTDOWN_TIMEOUT`` (seconds, default 30)."""
        data_dir = os.environ.get("THUNDERLINE_DATA_DIR") or tempfile.mkdtemp(prefix="thunderline-")
        timeout_text = os.environ.get("THUNDERLINE_SHUTDOWN_TIMEOUT") or "30"
        try:
            timeout = float(timeout_text)
        except ValueError:
            timeout = -1.0
        if not timeout > 0:
            raise AppConfigError(
                "THUNDERLINE_SHUTDOWN_TIMEOUT", "a number of seconds > 0", timeout_text
            )
        return cls(
            data_dir=Path(data_dir),
            ledger=os.environ.get("THUNDERLINE_LEDGER") or None,
            ledger_schema=os.environ.get("THUNDERLINE_LEDGER_SCHEMA") or "thunderline_ledger",
            shutdown_timeout=timeout,
        )


def application_spec(config: AppConfig) -> tl.ChildSpec:
    """The application's top supervisor as a child spec (registered as ``thunderline.app``)."""
    return top_supervisor([*back_children(config), *front_children(config, DEFAULT_SAGAS)])


def back_children(config: AppConfig) -> list[tl.ChildSpec]:
    """Vault (the ledger) and Link, started first: the others call them."""
    data_dir = config.data_dir
    ledger = config.ledger or str(data_dir / "ledger.db")
    sink = config.sink if config.sink is not None else data_dir / "link.jsonl"
    return [
        vault_spec(ledger, data_dir, schema=config.ledger_schema),
        link_spec(sink, shutdown=config.shutdown_timeout),
    ]


def front_children(
    config: AppConfig,
    saga_map: Mapping[str, sagas.Saga],
    vault: str | tuple[str, str] = VAULT,
) -> list[tl.ChildSpec]:
    """The saga supervisor (journaling ``saga_map``'s sagas), Bolt and Flow (committing
    through ``vault``)."""
    return [
        sagas.saga_supervisor_spec(
            "sagas",
            name=SAGAS,
            max_concurrency=config.saga_concurrency,
            instrument=config.saga_instrument,
            journal=config.saga_journal or config.data_dir / "sagas.db",
            definitions=saga_map.values(),
            journal_codec=EventJournalCodec(),
        ),
        bolt_spec(dict(saga_map)),
        flow_spec(
            config.routes if config.routes is not None else default_routes(),
            shutdown_timeout=config.shutdown_timeout,
            vault=vault,
        ),
    ]


def top_supervisor(children: Sequence[tl.ChildSpec]) -> tl.ChildSpec:
    """The application's top supervisor (``thunderline.app``, one_for_one, 10 restarts in 10 s)."""
    return tl.supervisor_spec(
        "thunderline", list(children), strategy="one_for_one", intensity=10, period=10, name=APP
    )


def application() -> tl.ChildSpec:
    """The application with its configuration from the environment (for ``thunderline run``)."""
    return application_spec(AppConfig.from_env())
