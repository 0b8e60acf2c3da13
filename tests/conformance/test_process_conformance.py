"""Every process scenario recorded from real Erlang/OTP 25, run through the adapter.

The scenarios and expected logs are data in this repository:
``otp25/process/`` (the recorded corpus) and ``extra_process/`` (regression
scenarios from differential testing, also recorded from a real BEAM); see
``otp25/README.md``. Each scenario runs in-process on both anyio backends and
its log must equal OTP's in canonical order (``eventlog.py``). One test also
drives the adapter as a command, to prove the command-line contract.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conformance_support import load_module
from eventlog import canonical_process_order, explain_mismatch, parse_log, render

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "otp25" / "process"
ADAPTER = HERE / "process_adapter.py"


adapter = load_module("process_conformance_adapter", ADAPTER)

SCENARIOS = sorted((CORPUS / "scenarios").glob("*.json"))
# Regression scenarios found by differential testing against real OTP 25 (see
# extra_process/README.md); their expected logs were recorded from a real BEAM too.
EXTRA = HERE / "extra_process"
EXTRA_SCENARIOS = sorted((EXTRA / "scenarios").glob("*.json"))


def _canonical(events: list[dict[str, Any]]) -> list[str]:
    # Round-trip through JSON as the command line does, so both sides are parsed objects.
    parsed = [json.loads(json.dumps(e)) for e in events]
    return render(canonical_process_order(parsed))


def _expected(path: Path) -> list[dict[str, Any]]:
    log = path.parent.parent / "expected" / (path.stem + ".jsonl")
    return parse_log(log.read_text(encoding="utf-8"), str(log))


def _assert_matches(path: Path, backend: str, got: list[dict[str, Any]]) -> None:
    problem = explain_mismatch(_canonical(_expected(path)), _canonical(got))
    if problem is not None:
        pytest.fail(f"{path.stem} on {backend}: {problem}", pytrace=False)


def test_corpus_is_there() -> None:
    # The whole OTP 25 recording (otp25/README.md): 100 generated scenarios, 21 probes.
    assert len(SCENARIOS) == 121
    assert sum(p.name.startswith("probe_") for p in SCENARIOS) == 21
    expected = sorted((CORPUS / "expected").glob("*.jsonl"))
    assert [p.stem for p in expected] == [p.stem for p in SCENARIOS]
    assert EXTRA_SCENARIOS
    for path in EXTRA_SCENARIOS:
        assert (EXTRA / "expected" / (path.stem + ".jsonl")).is_file(), path


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(
    "path",
    SCENARIOS + EXTRA_SCENARIOS,
    ids=[p.stem for p in SCENARIOS] + ["extra-" + p.stem for p in EXTRA_SCENARIOS],
)
def test_scenario_matches_otp(path: Path, backend: str) -> None:
    scenario = json.loads(path.read_text(encoding="utf-8"))
    _assert_matches(path, backend, adapter.run_scenario(scenario, backend))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(
    "name", ["000", "probe_reply_then_killed_by_link", "probe_call_timeout_late_reply_dropped"]
)
def test_adapter_command_line(name: str, backend: str) -> None:
    """The adapter as a command: scenario path in, JSON lines on stdout, exit status 0."""
    path = CORPUS / "scenarios" / f"{name}.json"
    done = subprocess.run(
        [sys.executable, str(ADAPTER), "--backend", backend, str(path)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert all(line.startswith("{") for line in done.stdout.splitlines())
    _assert_matches(path, backend, parse_log(done.stdout, "adapter"))


def test_comparison_detects_a_wrong_log() -> None:
    """The comparison can fail: a log with one reason changed does not match."""
    path = CORPUS / "scenarios" / "probe_kill_becomes_killed.json"
    got = adapter.run_scenario(json.loads(path.read_text(encoding="utf-8")), "asyncio")
    tampered = [dict(e) for e in got]
    exits = [e for e in tampered if e["event"] == "exit"]
    assert exits
    exits[0]["reason"] = "normal" if exits[0]["reason"] != "normal" else "boom"
    assert _canonical(got) != _canonical(tampered)


@pytest.mark.parametrize(
    ("text", "printed"),
    [
        ("boom", "boom"),
        ("'EXIT'", "'EXIT'"),
        ("'hello world'", "'hello world'"),
        ("{shutdown,x}", "{shutdown,x}"),
        ("[1,2,3]", "[1,2,3]"),
        ('"abc"', '"abc"'),
        ("[97,98]", '"ab"'),
        ("[]", "[]"),
        ("{}", "{}"),
        ("[a|b]", "[a|b]"),
        ("{-5,'end',[{}]}", "{-5,'end',[{}]}"),
        ("'$gen_cast'", "'$gen_cast'"),
    ],
)
def test_term_round_trip(text: str, printed: str) -> None:
    assert adapter.Printer()(adapter.parse_term(text)) == printed


def test_reason_mapping() -> None:
    from thunderline.runtime import KILL, KILLED, NOPROC, NORMAL, SHUTDOWN, Shutdown

    printer = adapter.Printer()
    for text, reason in [
        ("normal", NORMAL),
        ("shutdown", SHUTDOWN),
        ("kill", KILL),
        ("killed", KILLED),
        ("noproc", NOPROC),
    ]:
        assert adapter.to_reason(adapter.parse_term(text)) == reason
        assert printer(reason) == text
    detail = adapter.to_reason(adapter.parse_term("{shutdown,{a,1}}"))
    assert detail == Shutdown((adapter.Atom("a"), 1))
    assert printer(detail) == "{shutdown,{a,1}}"
