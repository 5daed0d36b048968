"""``--log-format json``: one JSON object per line with the context passed via ``extra=``."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from hub.cli.common import JsonFormatter

ROOT = Path(__file__).parents[1]


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("hub.casework", logging.WARNING, __file__, 1, msg, args, None)
    rec.created = 1_796_000_000.25
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_a_line_is_one_json_object_with_context() -> None:
    line = JsonFormatter().format(
        record("case %s overdue", "C-1", case_id="C-1", device_id="z2m:0x00158d", community="370105005001")
    )
    assert "\n" not in line
    doc = json.loads(line)
    assert doc == {
        "time": "2026-11-30T00:53:20.250Z",
        "level": "warning",
        "logger": "hub.casework",
        "message": "case C-1 overdue",
        "case_id": "C-1",
        "device_id": "z2m:0x00158d",
        "community": "370105005001",
    }


def test_exceptions_and_odd_values_stay_on_one_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        rec = record("failed", path=Path("/x"))
        rec.exc_info = sys.exc_info()
    doc = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in doc["exception"] and doc["path"] == "/x"


def test_chinese_text_is_kept_readable() -> None:
    assert "一键通" in JsonFormatter().format(record("一键通 pressed"))


def test_cli_option_switches_the_format() -> None:
    code = (
        "import logging, sys; from hub.cli import main; "
        "sys.argv = ['linli', '--log-format', 'json', 'config', 'show', '--format', 'json']; "
        "main.main(standalone_mode=False); "
        "logging.getLogger('hub.test').info('hello', extra={'case_id': 'C-9'})"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin"},
    )
    (line,) = out.stderr.strip().splitlines()
    doc = json.loads(line)
    assert doc["message"] == "hello" and doc["case_id"] == "C-9" and doc["level"] == "info"


def test_text_stays_the_default() -> None:
    code = (
        "import logging, sys; from hub.cli import main; "
        "sys.argv = ['linli', 'config', 'show', '--format', 'json']; "
        "main.main(standalone_mode=False); "
        "logging.getLogger('hub.test').info('hello')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin"},
    )
    assert out.stderr.strip().endswith("INFO    hub.test: hello")
