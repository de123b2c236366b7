"""The machine a run measured on: CPU, OS, Python, load, package and tool versions, date."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shutil
import subprocess


def machine_info() -> list[tuple[str, str]]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    versions = []
    for package in (
        "freedompay-async",
        "aiohttp",
        "msgspec",
        "yarl",
        "multidict",
        "uvloop",
        "httpx",
        "httpcore",
        "pydantic",
    ):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    tools = []
    for tool, flag in (("nginx", "-v"), ("wrk", "-v")):
        path = shutil.which(tool)
        if path is None:
            tools.append(f"{tool} (not installed)")
            continue
        try:
            out = subprocess.run([path, flag], capture_output=True, text=True, timeout=10)
            text = (out.stderr or out.stdout).strip().splitlines()[0]
            tools.append(text.replace("nginx version: ", ""))
        except (OSError, subprocess.SubprocessError, IndexError):
            tools.append(tool)
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} logical cores (shared: client, server and other jobs)"),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("load average at start", load),
        ("packages", ", ".join(versions)),
        ("tools", ", ".join(tools)),
    ]


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


_MACHINE: list[tuple[str, str]] = []


def machine_info_cached() -> list[tuple[str, str]]:
    """:func:`machine_info` as first taken in this process (its load average is the one before
    the run started loading the machine)."""
    if not _MACHINE:
        _MACHINE.extend(machine_info())
    return _MACHINE
