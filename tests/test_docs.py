"""docs/design.md and docs/guarantees.md stay true to the code.

* Every invariant id the code and tests cite (``S3``, ``T16``, ``L5``,
  ``C-SV7``...) is defined in ``docs/guarantees.md``.
* Every file the two documents cite exists in the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("docs/design.md", "docs/guarantees.md")
ID = re.compile(r"(?<![\w.-])([STL]\d{1,2}|C-[A-Z]{1,2}\d{1,2})(?!\w)")
#: Ids that only test the error type itself, on purpose undefined.
FAKE_IDS = frozenset({"S99"})


def _sources() -> list[Path]:
    return [
        path
        for top in ("src", "tests", "benchmarks")
        for path in (ROOT / top).rglob("*.py")
        if "otp25" not in path.parts
    ]


def test_every_cited_invariant_is_defined() -> None:
    defined = set(re.findall(r"\*\*([^*]+)\*\*", (ROOT / "docs/guarantees.md").read_text()))
    missing: dict[str, str] = {}
    for path in _sources():
        for match in ID.finditer(path.read_text(encoding="utf-8")):
            name = match.group(1)
            if name not in defined and name not in FAKE_IDS:
                missing.setdefault(name, str(path.relative_to(ROOT)))
    assert not missing, f"ids cited but not defined in docs/guarantees.md: {missing}"


def _repository_files() -> list[str]:
    skip = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".hypothesis"}
    return [
        "/" + str(p.relative_to(ROOT))
        for p in ROOT.rglob("*")
        if p.is_file() and not skip & set(p.relative_to(ROOT).parts)
    ]


def test_every_cited_file_exists() -> None:
    files = _repository_files()
    for doc in DOCS:
        for cited in re.findall(r"`([\w./-]+\.(?:py|md))`", (ROOT / doc).read_text()):
            assert any(f.endswith("/" + cited) for f in files), f"{doc} cites {cited}"
