"""Every supervisor scenario recorded from real Erlang/OTP must come out of thunderline unchanged.

Each scenario of ``otp25/supervisor/scenarios`` (data in this repository, see
``otp25/README.md``) runs through ``supervisor_adapter.py`` on asyncio and on
trio, in-process, and its event log must equal ``expected/NAME.jsonl`` exactly
(as parsed JSON objects, in order). So does each scenario of
``extra_supervisor/``: divergences found by differential testing against OTP 25,
with logs recorded from OTP (see its README). The comparison and the diff on a
mismatch are ``eventlog.py``'s. One scenario per backend also runs through the
command line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conformance_support import load_module
from eventlog import explain_mismatch, parse_log, render

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "otp25" / "supervisor"
ADAPTER = HERE / "supervisor_adapter.py"


adapter = load_module("supervisor_adapter", ADAPTER)

EXTRA = HERE / "extra_supervisor"
SCENARIOS = sorted(CORPUS.glob("scenarios/*.json"))
EXTRA_SCENARIOS = sorted(EXTRA.glob("scenarios/*.json"))
BACKENDS = ["asyncio", "trio"]


def _expected(scenario: Path) -> list[dict[str, Any]]:
    path = scenario.parent.parent / "expected" / (scenario.stem + ".jsonl")
    return parse_log(path.read_text(encoding="utf-8"), str(path))


def _assert_same(scenario: Path, expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> None:
    problem = explain_mismatch(render(expected), render(got))
    if problem is not None:
        pytest.fail(f"{scenario.stem}: {problem}", pytrace=False)


def test_corpus_is_present() -> None:
    # The whole OTP 25 recording (otp25/README.md): 100 generated scenarios, 11 probes.
    assert len(SCENARIOS) == 111
    assert sum(s.name.startswith("probe_") for s in SCENARIOS) == 11
    assert all((CORPUS / "expected" / (s.stem + ".jsonl")).exists() for s in SCENARIOS)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.stem for s in SCENARIOS])
def test_scenario_matches_otp(scenario: Path, backend: str) -> None:
    got = adapter.run_scenario(json.loads(scenario.read_text()), backend)
    _assert_same(scenario, _expected(scenario), got)


def test_extra_scenarios_are_present() -> None:
    assert EXTRA_SCENARIOS
    assert all((EXTRA / "expected" / (s.stem + ".jsonl")).exists() for s in EXTRA_SCENARIOS)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scenario", EXTRA_SCENARIOS, ids=[s.stem for s in EXTRA_SCENARIOS])
def test_extra_scenario_matches_otp(scenario: Path, backend: str) -> None:
    got = adapter.run_scenario(json.loads(scenario.read_text()), backend)
    _assert_same(scenario, _expected(scenario), got)


@pytest.mark.parametrize("backend", BACKENDS)
def test_command_line_contract(backend: str) -> None:
    """The adapter as a program: scenario path in, JSON lines on stdout, exit status 0."""
    scenario = CORPUS / "scenarios" / "probe_restart_retries_count_intensity_2.json"
    done = subprocess.run(
        [sys.executable, str(ADAPTER), "--backend", backend, str(scenario)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    got = parse_log(done.stdout, "adapter")
    assert all(line.startswith("{") for line in done.stdout.splitlines())
    _assert_same(scenario, _expected(scenario), list(got))
