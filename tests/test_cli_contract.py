"""What scripts rely on, in-process: each command's help (examples, columns, exit statuses),
usage errors with that command's usage, the ``--max-errors`` streak, and the CSV escape."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freedompay_async import cli
from freedompay_async.batch import BatchStats

COMMANDS = ("info", "poll", "worker", "demo")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_examples_and_exit_statuses(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"freedompay-async {command}" in text
    assert "exit status:" in text
    for code in ("0", "2", "3", "130"):
        assert f"\n  {code} " in text, (command, code)
    if command in ("poll", "demo"):
        assert "output columns" in text
        for column in cli.COLUMNS:
            assert f"\n  {column} " in text, column
    if command in ("info", "poll"):
        assert "--quiet" in text and "--log-level" in text
    if command == "poll":
        for flag in ("--resume", "--overwrite", "--max-errors", "143", "129"):
            assert flag in text


def test_top_level_help_has_examples_and_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "exit status:" in text and "run aborted" in text


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["info", "a", "b"], "usage: freedompay-async info"),
        (["info"], "usage: freedompay-async info"),
        (["poll", "ids.txt", "extra"], "usage: freedompay-async poll"),
        (["poll", "ids.txt", "--max-errors", "-1"], "usage: freedompay-async poll"),
        (["demo", "--nope"], "usage: freedompay-async demo"),
    ],
)
def test_a_usage_error_prints_that_command_usage(
    argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(usage)
    assert "usage: freedompay-async [-h]" not in err


# -- the --max-errors streak, through drain with a hand-made row source -----------------------


def row(identifier: str, error: str | None = None) -> cli.Row:
    return cli.Row(identifier=identifier, ok=error is None, error=error, message=error and "x")


class Rows:
    """A RowSource that yields the given rows."""

    def __init__(self, rows: list[cli.Row]) -> None:
        self._rows = rows
        self.stats = BatchStats()

    async def __aenter__(self) -> AsyncIterator[cli.Row]:
        async def generate() -> AsyncIterator[cli.Row]:
            for item in self._rows:
                self.stats.done += 1
                if item.ok:
                    self.stats.ok += 1
                else:
                    self.stats.failed += 1
                yield item

        return generate()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


async def drain(rows: list[cli.Row], max_errors: int) -> tuple[int, list[str]]:
    buffer = io.BytesIO()
    writer = cli.JsonlWriter(cli.Sink("<test>", stream=buffer))
    report = cli.Report(writer, lambda stats: None, None, max_errors=max_errors)

    @contextlib.asynccontextmanager
    async def owner() -> AsyncIterator[None]:
        yield

    status = await cli.drain(owner(), lambda progress: Rows(rows), [], report)
    return status, [json.loads(line)["identifier"] for line in buffer.getvalue().splitlines()]


async def test_a_broken_streak_of_unreachable_rows_is_written_in_order() -> None:
    rows = [row("a", "TransportError"), row("b", "RequestTimeoutError"), row("c"), row("d")]
    status, written = await drain(rows, max_errors=3)
    assert status == cli.EXIT_FAILED and written == ["a", "b", "c", "d"]
    # A streak at the end of a run that had successes: written too.
    status, written = await drain([row("c"), row("a", "TransportError")], max_errors=3)
    assert status == cli.EXIT_FAILED and written == ["c", "a"]


async def test_max_errors_in_a_row_abort_and_are_not_written() -> None:
    rows = [row("ok"), *(row(f"e{i}", "TransportError") for i in range(3)), row("never")]
    status, written = await drain(rows, max_errors=3)
    assert status == cli.EXIT_ABORTED and written == ["ok"]
    # Other errors break no streak and start none: they are the wallets' own failures.
    rows = [row(f"n{i}", "WalletNotFoundError") for i in range(5)]
    status, written = await drain(rows, max_errors=3)
    assert status == cli.EXIT_FAILED and len(written) == 5
    # 0: never abort; every row written.
    rows = [row(f"e{i}", "TransportError") for i in range(5)]
    status, written = await drain(rows, max_errors=0)
    assert status == cli.EXIT_FAILED and len(written) == 5


# -- CSV escape ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1+1", "'+1+1"),
        ("-1+1", "'-1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("'x", "''x"),
        ("-15.50", "-15.50"),
        ("+3", "+3"),
        ("1E+5", "1E+5"),
        ("user-1", "user-1"),
        ("", ""),
    ],
)
def test_csv_cell_escapes_formulas_but_not_numbers(text: str, cell: str) -> None:
    assert cli.csv_cell(text) == cell
    assert cli.csv_uncell(cell) == text


@given(st.text())
def test_csv_escape_is_reversible_and_never_starts_a_formula(text: str) -> None:
    cell = cli.csv_cell(text)
    assert cli.csv_uncell(cell) == text
    if cell and cell[0] in "=+-@\t\r":
        float(cell)  # only a plain number may start like a formula


def test_resume_reads_a_csv_with_newlines_and_quotes_in_cells(tmp_path: Path) -> None:
    """A message cell with a newline and quotes spans lines: the resume reader keeps records
    whole, and cuts a record left half-written."""
    out = tmp_path / "out.csv"
    writer = cli.open_writer(str(out), None)
    writer.write(cli.Row(identifier="=a", ok=False, error="E", message='line 1\nline "2"'))
    writer.write(cli.Row(identifier="b", ok=True))
    writer.close()
    whole = out.read_bytes()
    out.write_bytes(whole + b'c,false,,,,,E,,,"half a\nmessage')
    output = cli.open_output(str(out), None, resume=True)
    try:
        assert output.done == {"=a", "b"}
        assert out.read_bytes() == whole  # the half record was cut off
        assert output.dropped > 0
    finally:
        output.writer.close()


def test_overwrite_truncates_only_after_taking_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"identifier":"x"}\n')
    first = cli.open_output(str(out), None, resume=True)
    try:
        with pytest.raises(cli.UsageError, match="being written by another run"):
            cli.open_output(str(out), None, overwrite=True)
        assert out.read_text() == '{"identifier":"x"}\n'
    finally:
        first.writer.close()
    second = cli.open_output(str(out), None, overwrite=True)
    second.writer.close()
    assert out.read_text() == ""
