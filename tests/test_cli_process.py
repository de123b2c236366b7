"""The ``freedompay-async`` command as scripts and operators run it: real processes against
FakeFreedomPay (or a port where nothing listens), real signals, real files.

Exit statuses, inputs that are devices, a full disk, signals, and output files that are never
destroyed: refused when they exist, locked while written, resumed after a SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from freedompay_async import cli
from freedompay_async.testing import FakeFreedomPay

ROOT = Path(__file__).resolve().parent.parent


# -- helpers ---------------------------------------------------------------------------------


def environment(fake: FakeFreedomPay | None = None, base_url: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("FREEDOMPAY_AUTH_ID", "FREEDOMPAY_SECRET_KEY", "FREEDOMPAY_BASE_URL"):
        env.pop(name, None)
    env["FREEDOMPAY_AUTH_ID"] = fake.auth_id if fake else "123456"
    env["FREEDOMPAY_SECRET_KEY"] = fake.secret_key if fake else "fake-secret-key"
    url = base_url or (fake.url if fake else None)
    if url:
        env["FREEDOMPAY_BASE_URL"] = url
    return env


async def start(
    *argv: str, env: dict[str, str], stdin: int | None = asyncio.subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "freedompay_async",
        *argv,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )


async def run(
    *argv: str, env: dict[str, str], stdin_path: str | None = None, timeout: float = 60
) -> tuple[int, str, str]:
    """Run the command to its end: (exit status, stdout, stderr)."""
    if stdin_path is not None:
        fd = os.open(stdin_path, os.O_RDONLY)
        try:
            process = await start(*argv, env=env, stdin=fd)
        finally:
            os.close(fd)
    else:
        process = await start(*argv, env=env)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def write_ids(path: Path, count: int, prefix: str = "user-") -> list[str]:
    ids = [f"{prefix}{index}" for index in range(count)]
    path.write_text("".join(f"{identifier}\n" for identifier in ids))
    return ids


def identifiers_in(path: Path) -> list[str]:
    if path.suffix == ".csv":
        with path.open(newline="") as file:
            return [cli.csv_uncell(row["identifier"]) for row in csv.DictReader(file)]
    return [json.loads(line)["identifier"] for line in path.read_text().splitlines()]


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def wait_for_rows(path: Path, rows: int, process: asyncio.subprocess.Process) -> None:
    """Until ``path`` has ``rows`` lines (the run is under way), within 30 s."""
    for _ in range(600):
        if lines(path) >= rows:
            return
        assert process.returncode is None, "the run ended before it could be stopped"
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never had {rows} lines")


@pytest.fixture
async def slow_fake() -> AsyncIterator[FakeFreedomPay]:
    """2,000 wallets, 20 ms a reply: a run at -c 4 lasts ~10 s, time to stop it."""
    async with FakeFreedomPay(wallets=2000, latency=0.02) as server:
        yield server


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A port bound but not listening: every connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# -- inputs that are not regular files -------------------------------------------------------


@pytest.mark.parametrize("how", ["stdin", "path"])
async def test_dev_null_input_finishes_at_once_with_no_rows(how: str, fake: FakeFreedomPay) -> None:
    argv = ("poll", "-") if how == "stdin" else ("poll", "/dev/null")
    stdin = "/dev/null" if how == "stdin" else None
    code, out, err = await run(*argv, env=environment(fake), stdin_path=stdin, timeout=20)
    assert (code, out) == (0, ""), err
    assert "0 done" in err and "Traceback" not in err
    assert fake.stats.requests == 0


async def test_dev_zero_input_is_an_input_error_not_a_hang(fake: FakeFreedomPay) -> None:
    code, _, err = await run("poll", "/dev/zero", env=environment(fake), timeout=20)
    assert code == cli.EXIT_USAGE, err
    assert "longer than" in err and "Traceback" not in err


async def test_ids_from_a_pipe_that_stays_open_do_not_block_the_loop(
    slow_fake: FakeFreedomPay, tmp_path: Path
) -> None:
    """Lines come one by one through a pipe kept open: each is looked up as it arrives."""
    out = tmp_path / "out.jsonl"
    process = await start(
        "poll", "-", "-o", str(out), env=environment(slow_fake), stdin=asyncio.subprocess.PIPE
    )
    assert process.stdin is not None
    try:
        for index in range(3):
            process.stdin.write(f"user-{index}\n".encode())
            await process.stdin.drain()
            await wait_for_rows(out, index + 1, process)  # written while the pipe is open
        process.stdin.close()
        code = await asyncio.wait_for(process.wait(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0
    assert sorted(identifiers_in(out)) == ["user-0", "user-1", "user-2"]


async def test_a_line_that_is_not_utf8_is_not_sent_and_names_its_line(
    fake: FakeFreedomPay, tmp_path: Path
) -> None:
    source = tmp_path / "ids.txt"
    source.write_bytes(b"user-1\n\nuser-\xff\xfe2\nuser-3\n")
    out = tmp_path / "out.jsonl"
    code, _, err = await run("poll", str(source), "-o", str(out), env=environment(fake))
    assert code == cli.EXIT_FAILED, err
    rows = {row["identifier"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"user-1", "user-\\xff\\xfe2", "user-3"}
    bad = rows["user-\\xff\\xfe2"]
    assert bad["ok"] is False and bad["error"] == "InvalidArgumentError"
    assert "line 3" in bad["message"] and "UTF-8" in bad["message"]
    assert fake.stats.requests == 2  # the bad line was never sent (no U+FFFD lookup)
    assert "1 input line not UTF-8" in err


# -- output failures -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_disk_full_is_one_line_exit_2_and_counts_no_row(
    fmt: str, fake: FakeFreedomPay, tmp_path: Path
) -> None:
    ids = tmp_path / "ids.txt"
    write_ids(ids, 100)
    code, _, err = await run(
        "poll", str(ids), "--out", "/dev/full", "--format", fmt, env=environment(fake)
    )
    assert code == cli.EXIT_USAGE, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "No space left on device" in errors[0]
    # A summary, if any, claims no row written (nothing reached /dev/full).
    assert "100 rows written" not in err
    if "rows written" in err:
        assert "0 rows written to /dev/full" in err


async def test_stdout_full_is_one_line_exit_2(fake: FakeFreedomPay, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    write_ids(ids, 100)
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "freedompay_async", "poll", str(ids),
            stdout=full, stderr=asyncio.subprocess.PIPE, env=environment(fake), cwd=ROOT,
        )  # fmt: skip
    finally:
        os.close(full)
    _, err_bytes = await asyncio.wait_for(process.communicate(), 60)
    err = err_bytes.decode()
    assert process.returncode == cli.EXIT_USAGE, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "0 rows written to <stdout>" in err and "No space left on device" in err


# -- CSV injection ---------------------------------------------------------------------------


async def test_csv_cells_that_would_be_formulas_get_a_quote_jsonl_stays_exact(
    fake: FakeFreedomPay, tmp_path: Path
) -> None:
    hostile = ['=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)", "'=quoted", "plain"]
    fake.add_wallet("-7", balance="-15.50")  # a plain number stays a number, negative too
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join([*hostile, "-7"]) + "\n")
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"out.{fmt}"
        code, _, err = await run("poll", str(ids), "-o", str(out), env=environment(fake))
        assert code == cli.EXIT_FAILED, err  # the hostile ids are unknown wallets
    with (tmp_path / "out.csv").open(newline="") as file:
        cells = {row["identifier"]: row for row in csv.DictReader(file)}
    assert set(cells) == {
        "'=HYPERLINK(\"http://x\")", "'+1+2", "'-2+3", "'@SUM(A1)", "''=quoted", "plain", "-7",
    }  # fmt: skip
    assert cells["-7"]["balance"] == "-15.50"
    jsonl = set(identifiers_in(tmp_path / "out.jsonl"))
    assert jsonl == {*hostile, "-7"}


# -- exit statuses ---------------------------------------------------------------------------


async def test_exit_0_when_every_wallet_is_read(fake: FakeFreedomPay, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    write_ids(ids, 20)
    code, out, err = await run("poll", str(ids), env=environment(fake))
    assert code == 0, err
    assert len(out.splitlines()) == 20
    code, out, err = await run("poll", str(ids), "--quiet", env=environment(fake))
    assert (code, err) == (0, "")  # --quiet: no summary
    assert len(out.splitlines()) == 20


async def test_exit_1_when_some_wallets_failed(fake: FakeFreedomPay, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("user-1\nghost\n")
    code, out, err = await run("poll", str(ids), env=environment(fake))
    assert code == cli.EXIT_FAILED, err
    assert len(out.splitlines()) == 2
    code, _, err = await run("info", "ghost", env=environment(fake))
    assert code == cli.EXIT_FAILED and "WalletNotFoundError" in err


async def test_exit_2_for_usage_and_input_errors(fake: FakeFreedomPay, tmp_path: Path) -> None:
    code, _, err = await run("poll", str(tmp_path / "missing.txt"), env=environment(fake))
    assert code == cli.EXIT_USAGE and "cannot read" in err
    long_line = tmp_path / "long.txt"
    long_line.write_text("user-1\n" + "x" * 70_000 + "\n")
    code, _, err = await run("poll", str(long_line), env=environment(fake))
    assert code == cli.EXIT_USAGE and "line 2 is longer than" in err  # was 1 before
    code, _, err = await run("info", "a", "b", env=environment(fake))
    assert code == cli.EXIT_USAGE
    assert "usage: freedompay-async info" in err and "unrecognized arguments: b" in err


async def test_exit_3_when_the_credentials_are_refused(
    fake: FakeFreedomPay, tmp_path: Path
) -> None:
    ids = tmp_path / "ids.txt"
    write_ids(ids, 50)
    env = {**environment(fake), "FREEDOMPAY_SECRET_KEY": "wrong"}
    code, out, err = await run("poll", str(ids), "-c", "2", env=env)
    assert code == cli.EXIT_ABORTED, err
    assert out == "" and "refused the credentials" in err
    code, _, err = await run("info", "user-1", env=env)
    assert code == cli.EXIT_ABORTED and "AuthenticationError" in err


async def test_exit_3_at_once_when_the_host_is_unreachable(
    refused_url: str, tmp_path: Path
) -> None:
    """100,000 ids against a port that refuses: stopped after --max-errors lookups, not one
    error row per id; no row written, so --resume will look them all up."""
    ids = tmp_path / "ids.txt"
    write_ids(ids, 100_000)
    out = tmp_path / "out.jsonl"
    env = environment(base_url=refused_url)
    code, _, err = await run("poll", str(ids), "-o", str(out), "--max-errors", "50", env=env)
    assert code == cli.EXIT_ABORTED, err
    assert "50 lookups in a row could not reach the API" in err and "--max-errors" in err
    assert out.read_text() == ""
    done = int(err.split(" done", 1)[0].rsplit(" ", 1)[-1].replace(",", ""))
    assert 50 <= done < 50 + 64 * 2  # stopped within about one pool of requests in flight
    # A short list that never reaches the limit is aborted too: every lookup failed to connect.
    write_ids(ids, 3)
    code, _, err = await run("poll", str(ids), "-o", str(out), "--resume", env=env)
    assert code == cli.EXIT_ABORTED and "all 3 lookups could not reach the API" in err
    code, _, err = await run("info", "user-1", env=env)
    assert code == cli.EXIT_ABORTED and "TransportError" in err


# -- signals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
)
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_a_signal_stops_cleanly_keeps_every_row_and_prints_the_summary(
    signum: int, status: int, fmt: str, slow_fake: FakeFreedomPay, tmp_path: Path
) -> None:
    ids = tmp_path / "ids.txt"
    write_ids(ids, 2000)
    out = tmp_path / f"out.{fmt}"
    process = await start("poll", str(ids), "-o", str(out), "-c", "4", env=environment(slow_fake))
    try:
        await wait_for_rows(out, 10, process)
        process.send_signal(signum)
        _, err_bytes = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    err = err_bytes.decode()
    assert process.returncode == status, err
    assert "interrupted:" in err and "Traceback" not in err
    assert out.read_bytes().endswith(b"\n")  # no half-written row
    written = identifiers_in(out)
    assert 10 <= len(written) < 2000
    assert len(set(written)) == len(written)
    assert f"{len(written):,} rows written to {out}" in err  # the summary counts the file


# -- output files are never destroyed --------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_an_existing_output_is_refused_and_untouched_without_resume_or_overwrite(
    fmt: str, fake: FakeFreedomPay, tmp_path: Path
) -> None:
    ids = tmp_path / "ids.txt"
    write_ids(ids, 10)
    out = tmp_path / f"out.{fmt}"
    out.write_bytes(b"precious\n")
    before = out.stat()
    code, _, err = await run("poll", str(ids), "-o", str(out), env=environment(fake))
    assert code == cli.EXIT_USAGE, err
    assert "--resume" in err and "--overwrite" in err
    assert out.read_bytes() == b"precious\n" and out.stat().st_mtime_ns == before.st_mtime_ns
    assert fake.stats.requests == 0
    # --resume on a file that is not ours is refused too, and leaves it as it is.
    code, _, err = await run("poll", str(ids), "-o", str(out), "--resume", env=environment(fake))
    assert code == cli.EXIT_USAGE and "cannot resume" in err
    assert out.read_bytes() == b"precious\n"
    code, _, err = await run("poll", str(ids), "-o", str(out), "--overwrite", env=environment(fake))
    assert code == 0, err
    assert sorted(identifiers_in(out)) == sorted(f"user-{i}" for i in range(10))


async def test_resume_and_overwrite_are_refused_on_stdout(fake: FakeFreedomPay) -> None:
    code, _, err = await run("poll", "/dev/null", "--resume", env=environment(fake))
    assert code == cli.EXIT_USAGE and "--out FILE" in err
    code, _, err = await run("poll", "/dev/null", "--resume", "--overwrite", env=environment(fake))
    assert code == cli.EXIT_USAGE and "not allowed with" in err


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_sigkill_mid_run_then_resume_has_every_id_exactly_once(
    fmt: str, slow_fake: FakeFreedomPay, tmp_path: Path
) -> None:
    ids = tmp_path / "ids.txt"
    wanted = write_ids(ids, 2000)
    out = tmp_path / f"out.{fmt}"
    env = environment(slow_fake)
    process = await start("poll", str(ids), "-o", str(out), "-c", "8", env=env)
    try:
        await wait_for_rows(out, 50, process)
    finally:
        with contextlib.suppress(ProcessLookupError):  # (ended already: nothing to kill)
            process.kill()  # SIGKILL: no clean-up at all
        await process.wait()
    before = out.read_bytes()
    if fmt == "jsonl":
        # A crash mid-write leaves part of a row: --resume must drop it, not keep it.
        out.write_bytes(before + b'{"identifier":"user-1999","ok":tr')
    requests = slow_fake.stats.requests
    code, _, err = await run("poll", str(ids), "-o", str(out), "-c", "64", "--resume", env=env)
    assert code == 0, err
    assert out.read_bytes().startswith(before)  # appended, never rewritten
    got = identifiers_in(out)
    assert sorted(got) == sorted(wanted)  # every id exactly once
    kept = before.count(b"\n") - (1 if fmt == "csv" else 0)
    assert f"{kept:,} identifiers already there are skipped" in err
    assert slow_fake.stats.requests - requests == len(wanted) - kept


async def test_a_second_run_on_the_same_output_is_refused_while_the_first_writes(
    slow_fake: FakeFreedomPay, tmp_path: Path
) -> None:
    """The first run reads its ids from a pipe this test keeps open: it is alive (holding
    the lock) for as long as the other runs are tried, whatever the machine's speed."""
    ids = tmp_path / "ids.txt"
    wanted = write_ids(ids, 300)
    out = tmp_path / "out.jsonl"
    env = environment(slow_fake)
    first = await start("poll", "-", "-o", str(out), env=env, stdin=asyncio.subprocess.PIPE)
    assert first.stdin is not None
    try:
        first.stdin.write("".join(f"{i}\n" for i in wanted[:100]).encode())
        await first.stdin.drain()
        await wait_for_rows(out, 5, first)
        for flags in ((), ("--resume",), ("--overwrite",)):
            code, _, err = await run("poll", str(ids), "-o", str(out), *flags, env=env)
            assert code == cli.EXIT_USAGE, err
            assert "being written by another run" in err, err
        first.stdin.write("".join(f"{i}\n" for i in wanted[100:]).encode())
        first.stdin.close()
        _, err_bytes = await asyncio.wait_for(first.communicate(), 60)
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    assert first.returncode == 0, err_bytes.decode()
    assert sorted(identifiers_in(out)) == sorted(wanted)  # the file is intact


async def test_log_level_shows_the_retries_and_quiet_hides_the_summary(
    refused_url: str, tmp_path: Path
) -> None:
    ids = tmp_path / "ids.txt"
    write_ids(ids, 1)
    env = environment(base_url=refused_url)
    code, _, err = await run("poll", str(ids), env=env)
    assert code == cli.EXIT_ABORTED and "attempt 1 of 3 failed" not in err  # default: errors
    code, _, err = await run("poll", str(ids), "--log-level", "warning", env=env)
    assert code == cli.EXIT_ABORTED and "attempt 1 of 3 failed" in err
    code, _, err = await run("info", "user-1", "--log-level", "warning", env=env)
    assert code == cli.EXIT_ABORTED and "attempt 1 of 3 failed" in err
    code, _, err = await run("info", "user-1", "--quiet", "--log-level", "warning", env=env)
    assert code == cli.EXIT_ABORTED and "attempt 1 of 3 failed" not in err
    assert "TransportError" in err  # the error itself is always said
