"""schemathesis over the hub's own /openapi.json, with auth, against a real hub: no 5xx, schema kept.

The hub runs on port 0 with the embedded broker; ``st run`` (schemathesis's CLI, a
subprocess so that its own event loop and threads stay out of the hub's) generates requests
for every operation from the document — valid ones, and invalid ones in ``all`` mode — and
checks that none answers with a server error and that every response matches its declared
schema and content type. The event stream never ends, so it is left out here
(tests/test_web_authz.py reads it). Bounded examples keep the run well under two minutes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from hub.app import Hub
from tests.helpers import SOS_BUTTON, TOKEN, eventually, hub_settings, publisher
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

#: ``st`` with one work-around: grafana-client pulls in niquests, whose urllib3-future replaces
#: the ``urllib3`` module, and schemathesis's connection counting (only used to resend a request
#: on a dropped keep-alive connection) then fails on every request. Counting is turned off.
ST = (
    "import sys; import schemathesis.transport.requests as t;"
    " t._count_opened_connections = lambda session: 0;"
    " from schemathesis.cli import schemathesis; sys.exit(schemathesis())"
)
EXAMPLES = int(os.environ.get("LINLI_SCHEMATHESIS_EXAMPLES", "25"))


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    tmp_path: Path, embedded_broker: Broker
) -> None:
    # The system clock: scenario testing's /api/test/clock (manual clocks only) is not served.
    async with Hub(settings=hub_settings(tmp_path, embedded_broker)) as hub:
        gateway = await publisher(embedded_broker)
        gateway.publish(
            f"zigbee2mqtt/{SOS_BUTTON}",
            (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes(),
            qos=1,
        )
        await eventually(hub.cases.case_ids, what="a case to act on")
        await gateway.disconnect()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", ST, "run", f"http://127.0.0.1:{hub.http_port}/openapi.json",
            "--header", f"Authorization: Bearer {TOKEN}",
            "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--exclude-path", "/api/stream",
            "--max-examples", str(EXAMPLES),
            "--seed", "11",
            "--request-timeout", "10",
            # The coverage phase alone takes minutes here; fuzzing covers every operation.
            "--phases", "examples,fuzzing",
            "--no-color",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(proc.communicate(), 240)
        text = output.decode(errors="replace")
        assert proc.returncode == 0, text[-6000:]
        assert "No issues found" in text or "passed" in text, text[-3000:]
        # The hub survived it: still answers, every stored case still loads.
        assert all(hub.cases.load(i) is not None for i in hub.cases.case_ids(limit=10_000))
