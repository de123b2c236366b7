"""The README's "## Wallets" examples, run as they are against the fake server."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

from freedompay_async.testing import FakeFreedomPay

README = Path(__file__).resolve().parent.parent / "README.md"


def wallets_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Wallets\n") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


async def test_every_wallets_example_in_the_readme_runs() -> None:
    examples = wallets_examples()
    assert len(examples) == 9  # one per endpoint (request status with wait), plus testing
    async with FakeFreedomPay(wallets=100) as fake, fake.client() as client:
        namespace: dict[str, Any] = {"client": client, "fake": fake}
        for number, source in enumerate(examples, 1):
            code = compile(
                source, f"README.md example {number}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
            )
            result = eval(code, namespace)
            if inspect.iscoroutine(result):
                await result
    # What the examples did really happened on the server.
    assert fake.wallets["user-1001"].status == "closed"
    assert fake.wallets["user-42"].owner["iin"] == "900101300123"
    assert fake.wallets["user-7"].status == "blocked"
    assert fake.wallets["vip"].status == "blocked"
    assert fake.pending == []
