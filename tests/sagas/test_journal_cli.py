"""``thunderline sagas --journal PATH``: the operator's view of a saga journal."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from thunderline.cli import main
from thunderline.sagas import SagaBuilder, open_journal


def _journal(path: Path) -> None:
    async def step() -> str:
        return "x"

    b = SagaBuilder("shop", version=3, recovery="resume")
    b.step("a", step)
    saga = b.build(returns="a")
    with open_journal(path) as journal:
        done = journal.begin(saga, {}, "done-1")
        done.attempt_started("a", 1)
        done.attempt_finished("a", 1, "ok", None, {"v": 1})
        journal._finish("done-1", "succeeded", None, None)
        open_run = journal.begin(saga, {}, "open-2")
        open_run.attempt_started("a", 1)


def test_lists_runs_and_marks_the_unfinished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _journal(tmp_path / "sagas.db")
    assert main(["sagas", "--journal", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("2 run(s)")
    assert out[1].split() == ["done-1", "shop", "v3", "resume", "succeeded"]
    assert out[2].split() == ["open-2", "shop", "v3", "resume", "UNFINISHED"]
    assert main(["sagas", "--journal", str(tmp_path), "--unfinished", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["type"], r["correlation_id"], r["outcome"]) for r in rows] == [
        ("run", "open-2", None)
    ]


def test_shows_one_runs_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _journal(tmp_path / "sagas.db")
    assert main(["sagas", "--journal", str(tmp_path / "sagas.db"), "--run", "done-1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "attempt_started" in out[1]
    assert out[2].split()[1:] == ["attempt_finished", "a", "#1", "ok", "=", '{"v":1}']


@pytest.mark.parametrize("problem", ["missing", "version", "run"])
def test_errors_are_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], problem: str
) -> None:
    path = tmp_path / "sagas.db"
    args = ["sagas", "--journal", str(path)]
    if problem != "missing":
        _journal(path)
    if problem == "version":
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE journal_meta SET value = '7' WHERE key = 'version'")
    if problem == "run":
        args += ["--run", "nope"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert err.startswith("thunderline sagas: error: ")
    assert {"missing": "no such file", "version": "version 7", "run": "no run 'nope'"}[
        problem
    ] in err
    assert problem != "missing" or not path.exists()
