"""The README's Python blocks, tested as written (the convention: tests/readme_blocks.py).

``run`` blocks are executed here, section by section, against the fake server; ``module``
blocks are imported; every block is type-checked with ``mypy --strict`` by .ci/run
(``python -m tests.readme_blocks DIR``), and ``typecheck`` blocks only that, with a reason.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any

import pytest

from freedompay_async.testing import FakeFreedomPay
from tests.readme_blocks import KINDS, Block, blocks, problems, typecheck_sources

# How many blocks of each kind the README has. A block added, removed or re-marked changes
# these on purpose: nothing is skipped silently.
EXPECTED = {"run": 15, "module": 3, "typecheck": 2}

BLOCKS = blocks()
SECTIONS = list(dict.fromkeys(b.section for b in BLOCKS if b.kind == "run"))

# The README's placeholder credentials: the fake accepts exactly them.
AUTH_ID, SECRET_KEY = "123456", "..."


def test_every_block_is_marked_and_counted() -> None:
    assert problems(BLOCKS) == []
    counts = {kind: sum(block.kind == kind for block in BLOCKS) for kind in KINDS}
    assert counts == EXPECTED
    assert len(BLOCKS) == sum(EXPECTED.values())


def test_the_convention_refuses_unmarked_blocks_and_reasonless_skips() -> None:
    text = (
        "## A\n\n```python\nx = 1\n```\n\n"
        "<!-- readme-test: typecheck -->\n```python\ny = 2\n```\n\n"
        "<!-- readme-test: skip: no -->\n```python\nz = 3\n```\n\n"
        "<!-- readme-test: run\nw = 0\n-->\n```python\nv = w\n```\n"
    )
    found = blocks(text)
    assert [block.kind for block in found] == [None, "typecheck", "skip", "run"]
    assert found[3].setup == "w = 0"
    wrong = problems(found)
    assert len(wrong) == 3
    assert "line 3 (A): no <!-- readme-test" in wrong[0]
    assert "typecheck needs a reason" in wrong[1]
    assert "unknown kind 'skip'" in wrong[2]


def test_the_type_check_sources_hold_every_block() -> None:
    sources = "".join(typecheck_sources(BLOCKS).values())
    for block in BLOCKS:
        assert f"# {block.label}" in sources
        if block.kind == "module":
            assert block.code in sources


async def _run(block: Block, source: str, namespace: dict[str, Any]) -> None:
    code = compile(source, block.label, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        await result


@pytest.mark.parametrize("section", SECTIONS)
async def test_the_run_blocks_of_each_section_run(
    section: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeFreedomPay(wallets=100, auth_id=AUTH_ID, secret_key=SECRET_KEY) as fake:
        monkeypatch.setenv("FREEDOMPAY_AUTH_ID", AUTH_ID)
        monkeypatch.setenv("FREEDOMPAY_SECRET_KEY", SECRET_KEY)
        monkeypatch.setenv("FREEDOMPAY_BASE_URL", fake.url)
        async with fake.client() as client:
            namespace: dict[str, Any] = {"client": client, "fake": fake}
            ran = 0
            for block in BLOCKS:
                if block.section == section and block.kind == "run":
                    await _run(block, block.setup, namespace)
                    await _run(block, block.code, namespace)
                    ran += 1
        assert ran >= 1
        # Each section really talked to a server: this one, or one a block started itself.
        assert fake.stats.requests + namespace["fake"].stats.requests >= 1
        if section == "Wallets":
            # What the examples did really happened on the server.
            assert fake.wallets["user-1001"].status == "closed"
            assert fake.wallets["user-42"].owner["iin"] == "900101300123"
            assert fake.wallets["user-7"].status == "blocked"
            assert fake.wallets["vip"].status == "blocked"
            assert fake.pending == []


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.kind == "module"], ids=lambda b: f"line {b.line}"
)
def test_the_module_blocks_import(block: Block) -> None:
    namespace: dict[str, Any] = {"__name__": f"readme_line_{block.line}"}
    exec(compile(f"{block.setup}\n{block.code}", block.label, "exec"), namespace)
    assert any(callable(value) for value in namespace.values())
