"""Every process scenario recorded from real Erlang/OTP 25, run through the adapter.

The scenarios and expected logs live in ``../shared/conformance/process``; the
comparison reuses ``compare.py`` from there (canonical order, FORMAT.md
section 5). Each scenario runs in-process on both anyio backends; one test also
drives the adapter as a subprocess through ``compare.py`` itself, to prove the
command-line contract.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CORPUS = SHARED / "conformance" / "process"
ADAPTER = HERE / "process_adapter.py"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


compare = _load("process_conformance_compare", CORPUS / "compare.py")
adapter = _load("process_conformance_adapter", ADAPTER)

SCENARIOS = sorted((CORPUS / "scenarios").glob("*.json"))
# Regression scenarios found by differential testing against real OTP 25 (see
# extra_process/README.md); their expected logs were recorded from a real BEAM too.
EXTRA = HERE / "extra_process"
EXTRA_SCENARIOS = sorted((EXTRA / "scenarios").glob("*.json"))


class _Args:
    """The options compare.prepare reads: canonical order, nothing ignored."""

    ignore_event: list[str] = []
    strict = False


def _canonical(events: list[dict[str, Any]]) -> list[str]:
    # Round-trip through JSON as the CLI does, so both sides are parsed objects.
    parsed = [json.loads(json.dumps(e)) for e in events]
    return list(compare.prepare(parsed, _Args()))


def test_corpus_is_there() -> None:
    assert len(SCENARIOS) >= 100
    assert any(p.name.startswith("probe_") for p in SCENARIOS)
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
    expected_text = (path.parent.parent / "expected" / (path.stem + ".jsonl")).read_text(
        encoding="utf-8"
    )
    expected, error = compare.load_lines(expected_text, "expected")
    assert error is None, error
    scenario = json.loads(path.read_text(encoding="utf-8"))
    got = adapter.run_scenario(scenario, backend)
    e, g = _canonical(expected), _canonical(got)
    if e != g:
        _, what = compare.first_divergence(e, g)
        diff = compare.diff_text(e, g, 2, 60)
        pytest.fail(f"{path.stem} on {backend}: {what}\n{diff}", pytrace=False)


def test_adapter_cli_through_compare_py() -> None:
    """The adapter as a command, run by compare.py exactly as the README describes."""
    only = "000,probe_reply_then_killed_by_link,probe_call_timeout_late_reply_dropped"
    for backend in ("asyncio", "trio"):
        proc = subprocess.run(
            [
                sys.executable,
                str(CORPUS / "compare.py"),
                "--only",
                only,
                "--",
                sys.executable,
                str(ADAPTER),
                "--backend",
                backend,
            ],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "3 scenarios (canonical order): 3 match" in proc.stdout, proc.stdout


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
