"""Every gen_statem scenario recorded from real Erlang/OTP 25, run through the adapter.

The corpus is data copied into ``otp25/statem`` (scenarios and the logs a BEAM
wrote); ``statem_compare`` holds our comparison (canonical order). Each
scenario runs in-process on both anyio backends, on virtual time; one test
drives the adapter as a command, as the corpus's contract describes.

Four recordings (``DISPLACED``) have effect lines that the recording BEAM
logged after the op's ``result``/``alive`` lines: its settle step finished
before a client's call and its consequences were logged. They are the same
lines in the same per-process order; the adapter settles completely, so they
land before ``result``. For these the test checks that nothing else differs
(:func:`statem_compare.loose`) and that the strict comparison does fail,
so the list stays honest.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import statem_adapter  # noqa: E402
import statem_compare  # noqa: E402

CORPUS = HERE / "otp25" / "statem"
SCENARIOS = sorted((CORPUS / "scenarios").glob("*.json"))
DISPLACED = frozenset({"054", "072", "165", "246"})


def _run(path: Path, backend: str) -> list[dict[str, Any]]:
    return statem_adapter.run_scenario(json.loads(path.read_text(encoding="utf-8")), backend)


def test_corpus_is_there() -> None:
    assert len(SCENARIOS) >= 100
    assert sum(p.name.startswith("probe_") for p in SCENARIOS) >= 15
    for path in SCENARIOS:
        assert (CORPUS / "expected" / (path.stem + ".jsonl")).is_file(), path


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_matches_otp(path: Path, backend: str) -> None:
    expected = statem_compare.expected_log(path.stem)
    got = _run(path, backend)
    if path.stem in DISPLACED:
        assert statem_compare.difference(expected, got) is not None
        assert statem_compare.loose(expected) == statem_compare.loose(got)
        return
    problem = statem_compare.difference(expected, got)
    if problem is not None:
        pytest.fail(f"{path.stem} on {backend}: {problem}", pytrace=False)


def test_adapter_command_line() -> None:
    """The adapter as a command prints the log (one JSON object a line) and exits 0."""
    for backend in ("asyncio", "trio"):
        for name in ("probe_zero_timeouts_order", "probe_enter_call_restrictions"):
            proc = subprocess.run(
                [
                    sys.executable,
                    str(HERE / "statem_adapter.py"),
                    "--backend",
                    backend,
                    str(CORPUS / "scenarios" / f"{name}.json"),
                ],
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )
            assert proc.returncode == 0, proc.stderr
            got = statem_compare.read_log(proc.stdout)
            assert statem_compare.difference(statem_compare.expected_log(name), got) is None


def test_adapter_rejects_an_unreadable_scenario(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(HERE / "statem_adapter.py"), str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "cannot read" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_comparison_detects_a_wrong_log() -> None:
    """The comparison can fail: one changed callback argument is a mismatch."""
    name = "probe_postpone_retried_after_state_change_in_order"
    got = _run(CORPUS / "scenarios" / f"{name}.json", "asyncio")
    tampered = [dict(line) for line in got]
    cbs = [line for line in tampered if line["event"] == "cb"]
    cbs[-1]["content"] = "zz"
    assert statem_compare.difference(statem_compare.expected_log(name), got) is None
    assert statem_compare.difference(statem_compare.expected_log(name), tampered) is not None


def test_canonical_order_groups_by_process() -> None:
    lines = [
        {"event": "op", "i": 0},
        {"event": "cb", "proc": "s1", "n": 1},
        {"event": "reply", "proc": "p1"},
        {"event": "cb", "proc": "s1", "n": 2},
        {"event": "down", "proc": "driver", "target": "s2"},
        {"event": "msg", "proc": "driver", "msg": "{'EXIT',s1,boom}"},
        {"event": "result", "i": 0},
    ]
    order = [json.loads(line) for line in statem_compare.canonical(lines)]
    assert [(line["event"], line.get("proc")) for line in order] == [
        ("op", None),
        ("msg", "driver"),
        ("down", "driver"),
        ("reply", "p1"),
        ("cb", "s1"),
        ("cb", "s1"),
        ("result", None),
    ]
    assert [line.get("n") for line in order if line["event"] == "cb"] == [1, 2]
