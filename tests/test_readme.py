"""The README's Python blocks, tested as written (the convention: tests/readme_blocks.py).

``run`` blocks are executed here, section by section, against the fake server; ``module``
blocks are imported; every block is type-checked with ``mypy --strict`` by .ci/run
(``python -m tests.readme_blocks DIR``), and ``typecheck`` blocks only that, with a reason.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import pytest
import uvicorn
from aiohttp import web

from freedompay_async.testing import FakeFreedomPay
from tests.readme_blocks import KINDS, Block, blocks, problems, typecheck_sources

# How many blocks of each kind the README has. A block added, removed or re-marked changes
# these on purpose: nothing is skipped silently.
EXPECTED = {"run": 18, "module": 3, "typecheck": 2}

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
    namespace = _module_namespace(block)
    assert any(callable(value) for value in namespace.values())


def _module_namespace(block: Block) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"readme_line_{block.line}"}
    exec(compile(f"{block.setup}\n{block.code}", block.label, "exec"), namespace)
    return namespace


@asynccontextmanager
async def _serve(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI (uvicorn) or aiohttp app in this loop on a free port; yield its URL."""
    if isinstance(app, web.Application):
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            yield f"http://127.0.0.1:{runner.addresses[0][1]}"
        finally:
            await runner.cleanup()
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_config=None, access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        with anyio.fail_after(5):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.section == "Using it in a web app"], ids=["fastapi", "aiohttp"]
)
async def test_the_readme_web_apps_answer_over_http(
    block: Block, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A smoke run of the two web snippets: their app, served, in front of the fake; the
    # complete examples are tested case by case in tests/test_examples_web.py.
    namespace = _module_namespace(block)
    app = namespace["app"]
    if isinstance(app, web.Application):  # the snippet leaves the handlers out: add one
        client_key = namespace["CLIENT"]

        async def balance(request: web.Request) -> web.Response:
            info = await request.app[client_key].wallets.info(request.match_info["identifier"])
            return web.json_response({"balance": str(info.wallet.balance)})

        app.router.add_get("/wallets/{identifier}/balance", balance)
    async with FakeFreedomPay(wallets=100, auth_id=AUTH_ID, secret_key=SECRET_KEY) as fake:
        monkeypatch.setenv("FREEDOMPAY_AUTH_ID", AUTH_ID)
        monkeypatch.setenv("FREEDOMPAY_SECRET_KEY", SECRET_KEY)
        monkeypatch.setenv("FREEDOMPAY_BASE_URL", fake.url)
        connector = aiohttp.TCPConnector(force_close=True)
        async with _serve(app) as url, aiohttp.ClientSession(connector=connector) as http:
            async with http.get(f"{url}/wallets/user-42/balance") as response:
                assert response.status == 200
                assert (await response.json())["balance"] == str(fake.wallets["user-42"].balance)
            async with http.get(f"{url}/wallets/nobody/balance") as response:
                body = await response.json()
        if "from fastapi import" in block.code:
            assert (response.status, body["error"], body["error_code"]) == (
                404,
                "wallet_not_found",
                1004,
            )
        else:  # the hidden error_reply of the aiohttp snippet stands in for the FastAPI one
            assert (response.status, body["error"]) == (502, "upstream_error")
        assert fake.stats.by_path["/v5/partner/wallet/info"] == 2
