"""The ``freedompay-async`` command end to end against the fake server: output contents, exit
codes, stdin, progress, and Ctrl-C in a real subprocess."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from freedompay_async import FreedomPayError, cli
from freedompay_async.batch import BatchResult, BatchStats
from freedompay_async.testing import FakeFreedomPay

ROOT = Path(__file__).resolve().parent.parent
ENV_NAMES = ("FREEDOMPAY_AUTH_ID", "FREEDOMPAY_SECRET_KEY", "FREEDOMPAY_BASE_URL")


@pytest.fixture
async def env(fake: FakeFreedomPay, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and host of the fake server, in the environment as a user would set them."""
    monkeypatch.setenv("FREEDOMPAY_AUTH_ID", fake.auth_id)
    monkeypatch.setenv("FREEDOMPAY_SECRET_KEY", fake.secret_key)
    monkeypatch.setenv("FREEDOMPAY_BASE_URL", fake.url)


async def run(*argv: str) -> int:
    """Run the command in a thread (its own event loop) while the fake serves from this one."""
    return await asyncio.to_thread(cli.main, list(argv))


def write_ids(path: Path, ids: list[str]) -> Path:
    path.write_text("".join(f"{identifier}\n" for identifier in ids))
    return path


# -- info ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("env")
async def test_info_prints_one_wallet_as_json(
    fake: FakeFreedomPay, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.add_wallet("user-42", balance="15230.50", currency="KZT")
    assert await run("info", "user-42") == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["wallet"]["balance"] == "15230.50"
    assert reply["wallet"]["currency"] == "KZT"
    assert reply["wallet"]["identifiers"] == [{"value": "user-42"}]


@pytest.mark.usefixtures("env")
async def test_info_unknown_wallet_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await run("info", "nobody") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "WalletNotFoundError" in captured.err and "1004" in captured.err


@pytest.mark.parametrize("missing", ["FREEDOMPAY_AUTH_ID", "FREEDOMPAY_SECRET_KEY"])
@pytest.mark.parametrize("command", [["info", "user-1"], ["poll", "-"]])
async def test_missing_credential_is_one_line_and_exit_2(
    missing: str,
    command: list[str],
    fake: FakeFreedomPay,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FREEDOMPAY_BASE_URL", fake.url)
    other = "FREEDOMPAY_SECRET_KEY" if missing == "FREEDOMPAY_AUTH_ID" else "FREEDOMPAY_AUTH_ID"
    monkeypatch.setenv(other, "something")
    assert await run(*command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and missing in err and "Traceback" not in err
    assert fake.stats.requests == 0


async def test_credentials_and_host_from_options(
    fake: FakeFreedomPay, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    argv = ["--auth-id", fake.auth_id, "--secret-key", fake.secret_key, "--base-url", fake.url]
    assert await run("info", "user-3", *argv) == 0
    assert json.loads(capsys.readouterr().out)["wallet"]["identifiers"][0]["value"] == "user-3"


@pytest.mark.usefixtures("env")
async def test_bad_base_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run("info", "user-1", "--base-url", "ftp://example.com") == 2
    assert "base_url" in capsys.readouterr().err


# -- poll ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("env")
async def test_poll_writes_jsonl_one_line_per_wallet(
    fake: FakeFreedomPay, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [f"user-{i}" for i in range(50)] + ["ghost-1", "ghost-2"]
    source = tmp_path / "ids.txt"
    # A BOM, blank lines and surrounding spaces are tolerated.
    source.write_bytes(b"\xef\xbb\xbf" + b"\n\n".join(f"  {i} ".encode() for i in ids) + b"\n\n")
    out = tmp_path / "balances.jsonl"
    assert await run("poll", str(source), "--out", str(out), "-c", "8") == 1  # two failed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(row["identifier"] for row in rows) == sorted(ids)
    for row in rows:
        if row["identifier"].startswith("ghost-"):
            assert row["ok"] is False
            assert row["error"] == "WalletNotFoundError"
            assert row["error_code"] == "1004"
            assert row["message"] and row["balance"] is None
        else:
            wallet = fake.wallets[row["identifier"]]
            assert row["ok"] is True and row["error"] is None
            assert row["balance"] == str(wallet.balance)  # a decimal string, exactly
            assert row["currency"] == "KZT" and row["status"] == "active"
            assert row["wallet_id"] == str(wallet.wallet_id)
    err = capsys.readouterr().err
    assert "52 done (50 ok, 2 failed: WalletNotFoundError 2)" in err
    assert "p95" in err and "\r" not in err  # no progress line when stderr is not a terminal


@pytest.mark.usefixtures("env")
async def test_poll_writes_csv_and_exits_0_when_all_ok(tmp_path: Path) -> None:
    ids = [f"user-{i}" for i in range(30)]
    out = tmp_path / "balances.csv"
    assert await run("poll", str(write_ids(tmp_path / "ids", ids)), "-o", str(out)) == 0
    with out.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(cli.COLUMNS)
    assert sorted(row["identifier"] for row in rows) == sorted(ids)
    assert all(row["ok"] == "true" and row["error"] == "" for row in rows)
    assert rows[0]["balance"].count(".") == 1


@pytest.mark.usefixtures("env")
async def test_poll_csv_error_rows(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    source = write_ids(tmp_path / "ids", ["user-1", "ghost"])
    assert await run("poll", str(source), "-o", str(out), "--ordered") == 1
    with out.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["identifier"] for row in rows] == ["user-1", "ghost"]
    ghost = rows[1]
    assert (ghost["ok"], ghost["error"], ghost["error_code"], ghost["balance"]) == (
        "false",
        "WalletNotFoundError",
        "1004",
        "",
    )


@pytest.mark.usefixtures("env")
async def test_poll_ordered_keeps_input_order(tmp_path: Path) -> None:
    ids = [f"user-{i}" for i in range(99, -1, -1)]
    out = tmp_path / "out.jsonl"
    source = write_ids(tmp_path / "ids", ids)
    assert await run("poll", str(source), "-o", str(out), "--ordered", "-c", "16") == 0
    assert [json.loads(line)["identifier"] for line in out.read_text().splitlines()] == ids


@pytest.mark.usefixtures("env")
async def test_poll_reads_stdin_and_writes_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_ids(tmp_path / "ids", ["user-5", "user-6"])
    with source.open("rb") as file:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(file))
        assert await run("poll", "-", "--format", "csv", "--rate", "1000") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("identifier,ok,balance")
    assert sorted(line.split(",")[0] for line in lines[1:]) == ["user-5", "user-6"]


@pytest.mark.usefixtures("env")
async def test_poll_stops_on_authentication_error(
    fake: FakeFreedomPay, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    source = write_ids(tmp_path / "ids", [f"user-{i}" for i in range(100)])
    code = await run("poll", str(source), "-o", str(out), "-c", "2", "--secret-key", "wrong")
    assert code == cli.EXIT_ABORTED  # 3: the run was aborted, not "some wallets failed"
    # The refused lookups are not written: the same command with --resume looks them up again.
    assert out.read_text() == ""
    assert 1 <= fake.stats.requests < 100
    err = capsys.readouterr().err
    assert "refused the credentials" in err and "0 rows written" in err


@pytest.mark.usefixtures("env")
async def test_poll_usage_errors_exit_2(
    tmp_path: Path, fake: FakeFreedomPay, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_ids(tmp_path / "ids", ["user-1"])
    assert await run("poll", str(source), "-o", str(tmp_path / "out.txt")) == 2
    assert "--format" in capsys.readouterr().err
    assert await run("poll", str(tmp_path / "missing.txt")) == 2
    assert "cannot read" in capsys.readouterr().err
    assert await run("poll", str(source), "-o", str(tmp_path / "no" / "such" / "dir.csv")) == 2
    assert "cannot write" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        await run("poll", str(source), "--concurrency", "0")
    assert exited.value.code == 2
    assert fake.stats.requests == 0


# -- demo ------------------------------------------------------------------------------------


async def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.csv"
    assert await run("demo", "--wallets", "200", "--missing", "7", "-o", str(out)) == 1
    with out.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 207
    assert sorted(row["identifier"] for row in rows if row["ok"] == "false") == [
        f"unknown-{i}" for i in range(7)
    ]
    assert "207 done (200 ok, 7 failed: WalletNotFoundError 7)" in capsys.readouterr().err


async def test_demo_without_out_prints_a_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run("demo", "--wallets", "50", "--ordered") == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [row["identifier"] for row in rows] == ["user-0", "user-1", "user-2"]
    assert "showed 3 of 50 rows" in captured.err


# -- progress, packaging ---------------------------------------------------------------------


def test_progress_line_shows_rate_and_eta() -> None:
    stats = BatchStats()
    stats.started = stats.done = 250
    stats.ok, stats.failed = 247, 3
    stats._started_at = 100.0
    stats._finished_at = 110.0  # 10 s for 250: 25/s
    written: list[str] = []

    class Sink:
        def write(self, _result: object) -> None: ...
        def flush(self) -> None:
            written.append("flush")

        def close(self) -> None: ...

    screen = io.StringIO()
    progress = cli.Progress(Sink(), lambda s: 0.25, screen)
    progress(stats)
    line = screen.getvalue()
    assert line.startswith("\r\x1b[K")
    assert "250 done" in line and "3 failed" in line and "25/s" in line
    assert "25.0%" in line and "ETA 0:00:30" in line  # 10 s for a quarter: 30 s to go
    assert written == ["flush"]  # the output file is flushed on every tick
    progress.clear()
    assert screen.getvalue().endswith("\r\x1b[K")
    unknown_total = cli.Progress(Sink(), lambda s: None, None)
    assert "ETA" not in unknown_total.line(stats)


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["poll", "--help"], ["--version"]):
        with pytest.raises(SystemExit) as exited:
            cli.main(argv)
        assert exited.value.code == 0
    assert "freedompay-async" in capsys.readouterr().out


def test_console_script_is_declared() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"freedompay-async": "freedompay_async.cli:main"}
    assert "cli" in project["optional-dependencies"]


# -- Ctrl-C ----------------------------------------------------------------------------------


async def test_ctrl_c_stops_cleanly_and_keeps_every_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    async with FakeFreedomPay(wallets=2000, latency=0.02) as fake:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "FREEDOMPAY_AUTH_ID": fake.auth_id,
            "FREEDOMPAY_SECRET_KEY": fake.secret_key,
            "FREEDOMPAY_BASE_URL": fake.url,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "freedompay_async",
            "poll",
            "-",
            "--out",
            str(out),
            "--concurrency",
            "4",
            stdin=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        try:
            assert process.stdin is not None and process.stderr is not None
            process.stdin.write("".join(f"user-{i}\n" for i in range(2000)).encode())
            await process.stdin.drain()
            # Lines reach the file as results arrive (flushed a few times a second).
            for _ in range(300):
                await asyncio.sleep(0.05)
                if out.exists() and out.read_text().count("\n") >= 10:
                    break
            seen_before = out.read_text().count("\n")
            assert seen_before >= 10
            process.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(process.wait(), 20)
            err = (await process.stderr.read()).decode()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert code == 130, err
    assert "interrupted" in err and "Traceback" not in err
    text = out.read_text()
    assert text.endswith("\n")  # no half-written line
    rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) >= seen_before
    assert len(rows) < 2000  # it really stopped early
    assert len({row["identifier"] for row in rows}) == len(rows)
    assert all(row["ok"] for row in rows)


def test_sample_writer_prints_a_few_rows_and_then_leaves_the_terminal_to_progress() -> None:
    class Terminal(io.BytesIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    writer = cli.SampleWriter(screen, 2)
    results = [BatchResult(f"w-{i}", error=FreedomPayError("down")) for i in range(5)]
    assert writer.interactive
    for result in results:
        writer.write(cli.to_row(result))
    assert not writer.interactive  # the progress line is no longer cleared for each row
    assert writer.seen == 5 and writer.written == 2
    rows = [json.loads(line) for line in screen.getvalue().splitlines()]
    assert [row["identifier"] for row in rows] == ["w-0", "w-1"]
    assert rows[0]["error"] == "FreedomPayError" and rows[0]["message"] == "down"
