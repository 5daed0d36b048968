"""Start ``linli run --config FILE`` as a real subprocess and wait until its console is up."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

LINLI = str(Path(sys.executable).with_name("linli"))


async def spawn_hub(config: Path) -> asyncio.subprocess.Process:
    """``linli run --config FILE``, not waited for: its output is a pipe to read (or to leave
    unread for a short while, as a test that kills the hub during its start does)."""
    return await asyncio.create_subprocess_exec(
        LINLI,
        "run",
        "--config",
        str(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )


async def start_hub(config: Path, *, ready_s: float) -> tuple[asyncio.subprocess.Process, int]:
    """The running hub and its HTTP port, read from the start-up line that prints the console."""
    proc = await spawn_hub(config)
    assert proc.stdout is not None
    while b"console http://" not in (line := await asyncio.wait_for(proc.stdout.readline(), ready_s)):
        assert line, "hub exited before it was ready"
    found = re.search(rb"console http://[^:]+:(\d+)/", line)
    assert found is not None, line
    return proc, int(found.group(1))
