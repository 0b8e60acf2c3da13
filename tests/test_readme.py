"""The README's examples run and print what they say."""

from __future__ import annotations

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
