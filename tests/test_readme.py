"""The README's examples run and print what they say."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_counter_example_prints_five() -> None:
    block = next(b for b in _python_blocks() if "class Counter" in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    assert out.getvalue().strip() == "5"


def test_readme_echo_example_runs_on_both_backends() -> None:
    block = next(b for b in _python_blocks() if "async def echo" in b)
    import thunderline as tl

    for backend in ("asyncio", "trio"):
        namespace: dict[str, object] = {"tl": tl}
        exec(compile(block, str(README), "exec"), namespace)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            tl.run(namespace["main"], backend=backend)  # type: ignore[arg-type]
        assert out.getvalue().strip() == "HI"


def test_readme_saga_example_runs() -> None:
    block = next(b for b in _python_blocks() if 'SagaBuilder("checkout"' in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    assert out.getvalue().strip() == "charged 42 to visa"


def test_readme_property_test_example_runs() -> None:
    """The property-test example, driven for a few examples on asyncio and trio."""
    import anyio
    from hypothesis import given, settings

    from thunderline.testing import saga_plans

    block = next(b for b in _python_blocks() if "test_rollback_is_complete" in b)
    namespace: dict[str, object] = {}
    exec(compile(block, str(README), "exec"), namespace)
    inner = namespace["test_rollback_is_complete"].hypothesis.inner_test  # type: ignore[attr-defined]

    def check(backend: str) -> None:
        @settings(max_examples=8, deadline=None)
        @given(plan=saga_plans())
        def run(plan: object) -> None:
            anyio.run(inner, plan, backend=backend)

        run()

    check("asyncio")
    check("trio")


SRC = Path(__file__).resolve().parents[1] / "src" / "thunderline"


def _where_rows() -> list[tuple[str, str]]:
    """The (what, where) rows of the README's "Where things happen" table."""
    text = README.read_text()
    section = text.split("## Where things happen", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in ("what", "---"):
            rows.append((cells[0], cells[1]))
    return rows


def _defined_names(path: Path) -> set[str]:
    """Top-level functions, classes and assignments of a module, and ``Class.method``."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(f"{node.name}.{item.name}")
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_where_things_happen_table_cites_what_exists() -> None:
    """Every file of the table exists, and every name after a file is defined in it."""
    rows = _where_rows()
    assert len(rows) >= 8
    for what, where in rows:
        cited = re.findall(r"`([^`]+)`", where)
        assert cited, f"row {what!r} cites nothing"
        current: Path | None = None
        for token in cited:
            if token.endswith(".py") or "/" in token:
                current = SRC / token
                assert current.is_file(), f"row {what!r}: {token} does not exist"
                continue
            assert current is not None, f"row {what!r}: {token!r} comes before any file"
            assert token in _defined_names(current), (
                f"row {what!r}: {token!r} is not defined in {current.relative_to(SRC)}"
            )
