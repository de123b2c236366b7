"""The pytest plugin (``fake_freedompay`` / ``freedompay_client``), as a user meets it: the
README's test file run in a fresh project with pytester, under each plugin that runs async
tests; and ``FakeFreedomPay.client`` typed with the client's own keyword arguments."""

from __future__ import annotations

import importlib.util
import inspect
import textwrap

import pytest

from freedompay_async import FreedomPayClient
from freedompay_async.testing import FakeFreedomPay
from tests.readme_blocks import blocks

ASYNCIO_MARK = "pytestmark = pytest.mark.asyncio"
ANYIO_MARK = "pytestmark = pytest.mark.anyio"


def readme_test_file() -> str:
    """The complete test file of the README's "Testing your code" section."""
    (block,) = [
        b for b in blocks() if b.section.startswith("Testing your code") and b.kind == "module"
    ]
    assert ASYNCIO_MARK in block.code
    return block.code


def ini(asyncio_mode: str) -> str:
    # Warnings are errors: a strict-mode complaint about async fixtures, an unclosed session
    # or an un-awaited coroutine fails the run.
    return textwrap.dedent(
        f"""
        [pytest]
        asyncio_mode = {asyncio_mode}
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )


# (asyncio_mode, replace the asyncio mark with anyio's, extra pytest arguments)
MODES = {
    "pytest-asyncio strict": ("strict", False, ()),
    "pytest-asyncio auto": ("auto", False, ()),
    "anyio (pytest-asyncio strict beside it)": ("strict", True, ()),
    "anyio alone (-p no:asyncio)": ("strict", True, ("-p", "no:asyncio")),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_the_readme_test_file_passes_in_a_fresh_project(
    pytester: pytest.Pytester, mode: str
) -> None:
    asyncio_mode, anyio, args = MODES[mode]
    source = readme_test_file()
    if anyio:
        source = source.replace(ASYNCIO_MARK, ANYIO_MARK)
    if "no:asyncio" in args:  # without pytest-asyncio its ini options would be unknown
        pytester.makefile(".ini", pytest="[pytest]\nfilterwarnings = error\n")
    else:
        pytester.makefile(".ini", pytest=ini(asyncio_mode))
    pytester.makepyfile(test_wallets=source)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", *args)
    # anyio's plugin runs each test on every backend installed; FakeFreedomPay (aiohttp) needs
    # asyncio, so with trio installed the trio runs are skipped, saying why.
    trio = anyio and importlib.util.find_spec("trio") is not None
    result.assert_outcomes(passed=3, skipped=3 if trio else 0)
    if trio:
        result.stdout.fnmatch_lines(["*FakeFreedomPay runs on asyncio (aiohttp), not on trio*"])


def test_the_marker_the_options_fixture_and_a_conftest_override_combine(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".ini", pytest=ini("auto"))
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def freedompay_fake_options():
            return {"wallets": 5, "currency": "USD"}
        """
    )
    pytester.makepyfile(
        test_options="""
        import pytest
        from freedompay_async.testing import FakeFreedomPay

        async def test_directory_defaults(fake_freedompay: FakeFreedomPay) -> None:
            assert sorted(fake_freedompay.wallets) == [f"user-{n}" for n in range(5)]
            assert fake_freedompay.wallets["user-0"].currency == "USD"

        @pytest.mark.freedompay(wallets=2)
        async def test_the_marker_wins(fake_freedompay, freedompay_client) -> None:
            assert len(fake_freedompay.wallets) == 2
            info = await freedompay_client.wallets.info("user-1")
            assert info.wallet.currency == "USD"  # the rest of the options still apply

        @pytest.mark.freedompay(7)
        async def test_positional_marker_arguments_are_refused(fake_freedompay) -> None:
            pass

        async def test_each_test_gets_its_own_server(fake_freedompay) -> None:
            assert fake_freedompay.stats.requests == 0
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*takes keyword arguments only*"])


def test_fake_client_takes_exactly_the_clients_keyword_arguments() -> None:
    client_params = inspect.signature(FreedomPayClient).parameters
    fake_params = inspect.signature(FakeFreedomPay.client).parameters
    assert set(fake_params) - {"self"} == set(client_params) - {"region"}
    for name, param in fake_params.items():
        if name != "self":
            assert param.kind is inspect.Parameter.KEYWORD_ONLY, name
            if name not in ("auth_id", "secret_key", "base_url"):
                assert param.default == client_params[name].default, name
                assert param.annotation == client_params[name].annotation, name


async def test_a_misspelt_client_option_is_a_type_error() -> None:
    async with FakeFreedomPay() as fake:
        options = {"max_retriez": 2}
        with pytest.raises(TypeError, match="max_retriez"):
            fake.client(**options)  # type: ignore[arg-type]
        async with fake.client(max_retries=0, auth_id="other") as client:
            assert client.retry.max_attempts == 1 and client.auth_id == "other"
            assert client.base_url == fake.url
