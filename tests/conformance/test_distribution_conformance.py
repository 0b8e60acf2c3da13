"""The multi-node scenarios recorded from distributed Erlang (OTP 25), through thunderline.dist.

Data: ``otp25/distribution/`` (scenarios and expected logs, recorded from two
and three ``erl -sname`` nodes). Each scenario runs through
``distribution_adapter.py`` in-process against the test run's private NATS
server, on both backends, and must equal OTP's log in canonical order
(``eventlog.py``: the same canonical order as the process corpus). The
default run takes the hand-written ``probe_*`` scenarios and every tenth
generated one; ``THUNDERLINE_DIST_CORPUS=1`` runs the whole corpus. Scenarios with a known,
documented difference (``docs/distribution.md``) are strict xfails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eventlog import canonical_process_order, explain_mismatch, parse_log, render

import thunderline.dist as dist

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "otp25" / "distribution"
ADAPTER = HERE / "distribution_adapter.py"
sys.path.insert(0, str(HERE))
import distribution_adapter as adapter  # noqa: E402

SCENARIOS = sorted((CORPUS / "scenarios").glob("*.json"))
GENERATED = [p for p in SCENARIOS if not p.stem.startswith("probe_")]
QUICK = {p for p in SCENARIOS if p.stem.startswith("probe_")} | set(GENERATED[::10])

#: Scenarios whose log differs for a documented reason (docs/distribution.md, "Differences").
KNOWN: dict[str, str] = {}


@pytest.fixture(scope="module")
def nats_url() -> Any:
    with dist.NatsServer() as server:
        yield server.url


def _canonical(events: list[dict[str, Any]]) -> list[str]:
    parsed = [json.loads(json.dumps(e)) for e in events]
    return render(canonical_process_order(parsed))


def _check(path: Path, backend: str, got: list[dict[str, Any]]) -> None:
    log = CORPUS / "expected" / (path.stem + ".jsonl")
    expected = parse_log(log.read_text(encoding="utf-8"), str(log))
    problem = explain_mismatch(_canonical(expected), _canonical(got))
    if problem is not None:
        pytest.fail(f"{path.stem} on {backend}: {problem}", pytrace=False)


def _params() -> list[Any]:
    params = []
    for path in SCENARIOS:
        marks = []
        if path not in QUICK:
            marks.append(
                pytest.mark.skipif(
                    not os.environ.get("THUNDERLINE_DIST_CORPUS"),
                    reason="the whole corpus runs with THUNDERLINE_DIST_CORPUS=1",
                )
            )
        if path.stem in KNOWN:
            marks.append(pytest.mark.xfail(reason=KNOWN[path.stem], strict=True))
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


def test_corpus_is_there() -> None:
    assert len(SCENARIOS) >= 100
    for path in SCENARIOS:
        assert (CORPUS / "expected" / (path.stem + ".jsonl")).is_file(), path


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("path", _params())
def test_scenario_matches_distributed_erlang(path: Path, backend: str, nats_url: str) -> None:
    scenario = json.loads(path.read_text(encoding="utf-8"))
    _check(path, backend, adapter.run_scenario(scenario, backend, nats_url))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_adapter_command_line(backend: str) -> None:
    """The adapter as a command: it starts its own NATS server, prints JSON lines, exits 0."""
    path = CORPUS / "scenarios" / "probe_link_node_death_noconnection.json"
    done = subprocess.run(
        [sys.executable, str(ADAPTER), "--backend", backend, str(path)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    _check(path, backend, parse_log(done.stdout, "adapter"))
