"""The README's ```python blocks, as the test suite runs them and mypy checks them.

The convention (also in the README's "Contributing" section): every ```python block is preceded
by a marker comment on the line just above its fence, saying how it is tested::

    <!-- readme-test: run -->
    <!-- readme-test: typecheck: why it cannot run here -->
    <!-- readme-test: module: what runs it instead -->

- ``run``: executed by tests/test_readme.py, in README order, in one namespace per ``##``
  section (so a block may use names an earlier block of its section defined), against a
  ``FakeFreedomPay(wallets=100)`` started for the section. ``fake`` and ``client`` (a client
  bound to it) are predefined; ``FREEDOMPAY_AUTH_ID`` / ``FREEDOMPAY_SECRET_KEY`` /
  ``FREEDOMPAY_BASE_URL`` point at the fake, whose credentials are the README's placeholders
  (``"123456"`` / ``"..."``), so a ``FreedomPayClient(...)`` built in a block talks to it.
  Top-level ``await`` / ``async with`` are allowed.
- ``typecheck: REASON``: not run (it starts a server, needs Redis, ...), only type-checked;
  the reason is required.
- ``module: REASON``: a whole file (top-level ``def``s, decorators): type-checked as a module
  of its own, and imported (its top level executed) by the test; the reason says what
  exercises it further.

More lines inside the marker comment, before ``-->``, are a hidden setup: Python run (and
type-checked) just before the block, for what a snippet assumes but does not show::

    <!-- readme-test: run
    identifiers = [f"user-{n}" for n in range(20)]
    -->

Every block is type-checked with ``mypy --strict``: ``python -m tests.readme_blocks DIR``
writes them to DIR (one function per section, one module per ``module`` block) and .ci/run
runs mypy there. An unmarked block fails tests/test_readme.py.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"

KINDS = ("run", "typecheck", "module")
_MARKER = re.compile(
    r"<!-- readme-test: (?P<kind>[a-z-]+)(?::\s*(?P<reason>.*?))?\s*(?P<end>-->)?$"
)


@dataclasses.dataclass(frozen=True)
class Block:
    """One ```python block of the README."""

    line: int  # of the opening fence, 1-based
    section: str  # the ``##`` heading it is under
    kind: str | None  # None: unmarked
    reason: str
    setup: str  # hidden setup code from the marker comment ("" for none)
    code: str

    @property
    def label(self) -> str:
        return f"README.md line {self.line} ({self.section})"


def blocks(text: str | None = None) -> list[Block]:
    """Every ```python block of the README, with its marker (``kind`` None when unmarked)."""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    found: list[Block] = []
    section = "(top)"
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.strip() == "```python":
            end = index + 1
            while lines[end].strip() != "```":
                end += 1
            kind, reason, setup = _marker_before(lines, index)
            code = "\n".join(lines[index + 1 : end]) + "\n"
            found.append(Block(index + 1, section, kind, reason, setup, code))
            index = end
        index += 1
    return found


def _marker_before(lines: list[str], fence: int) -> tuple[str | None, str, str]:
    """The marker comment ending on the line just above ``fence``: kind, reason, setup."""
    if fence == 0 or not lines[fence - 1].rstrip().endswith("-->"):
        return None, "", ""
    start = fence - 1
    while start > 0 and not lines[start].startswith("<!--"):
        start -= 1
    match = _MARKER.match(lines[start].rstrip())
    if match is None:
        return None, "", ""
    setup_lines = [] if match.group("end") else lines[start + 1 : fence - 1]
    return match.group("kind"), (match.group("reason") or "").strip(), "\n".join(setup_lines)


def problems(found: list[Block]) -> list[str]:
    """What breaks the convention: unmarked blocks, unknown kinds, missing reasons."""
    wrong = []
    for block in found:
        if block.kind is None:
            wrong.append(f"{block.label}: no <!-- readme-test: run|typecheck|module --> marker")
        elif block.kind not in KINDS:
            wrong.append(f"{block.label}: unknown kind {block.kind!r}")
        elif block.kind != "run" and not block.reason:
            wrong.append(f"{block.label}: {block.kind} needs a reason (`{block.kind}: why`)")
    return wrong


# -- type-checking: the blocks as modules mypy can check -----------------------------------

_PRELUDE = """\
# Generated from README.md by tests/readme_blocks.py; type-checked by .ci/run. Do not edit.
from freedompay_async import FreedomPayClient
from freedompay_async.testing import FakeFreedomPay

"""


def _indent(code: str) -> str:
    return "".join(f"    {line}" if line.strip() else line for line in code.splitlines(True))


def typecheck_sources(found: list[Block]) -> dict[str, str]:
    """File name -> source: one ``async def`` per section holding its run and typecheck blocks
    (in order, so later blocks see earlier names), one module per ``module`` block."""
    sections: dict[str, list[Block]] = {}
    files: dict[str, str] = {}
    for block in found:
        if block.kind == "module":
            source = f"# {block.label}\n{block.setup}\n{block.code}"
            files[f"readme_module_line_{block.line}.py"] = source
        else:
            sections.setdefault(block.section, []).append(block)
    functions = []
    for number, (section, members) in enumerate(sections.items(), 1):
        body = "".join(
            f"    # {block.label}, {block.kind}\n{_indent(block.setup)}\n{_indent(block.code)}"
            for block in members
        )
        functions.append(
            f"async def section_{number}(fake: FakeFreedomPay, client: FreedomPayClient) -> None:"
            f"\n    # {section}\n{body}\n"
        )
    files["readme_sections.py"] = _PRELUDE + "\n\n".join(functions)
    return files


def main(argv: list[str]) -> int:
    """``python -m tests.readme_blocks DIR``: write the type-check sources to DIR."""
    if len(argv) != 1:
        print("usage: python -m tests.readme_blocks OUTPUT_DIR", file=sys.stderr)
        return 2
    found = blocks()
    wrong = problems(found)
    if wrong:
        print("\n".join(wrong), file=sys.stderr)
        return 1
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for name, source in typecheck_sources(found).items():
        (out / name).write_text(source, encoding="utf-8")
    counts = {kind: sum(block.kind == kind for block in found) for kind in KINDS}
    print(f"README: {len(found)} python blocks to type-check ({counts}) written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
