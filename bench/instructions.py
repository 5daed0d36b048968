"""Instructions per message in ``Pipeline.handle``: a count that does not move with the machine's load.

On a shared 2-core VM the CPU time of the same code moves by ±20 % between runs (docs/
benchmarks.md, "Twelfth pass"), more than most single changes to the hot path save. Valgrind's
callgrind counts the instructions the process executes instead, and that count is the same
on every run (with ``PYTHONHASHSEED`` fixed). Here it counts only the measured messages: the
child runs the deterministic stream (:func:`bench.run.build_messages`, clock pinned by
:class:`bench.run.StreamPace`) through a real, not started hub, first ``--warmup`` messages
uninstrumented (every device's plan and series tags are built, as in service), then turns
instrumentation on (``callgrind_control -i on``) for ``--messages`` more, and off again.

With ``--against REF`` the same is measured for a git ref (checked out into a temporary
worktree) in the same run, and the ratio is reported. Instructions are not time (cache misses
and branch mispredictions count alike), so this compares versions of the hot path; the
suite's msg/s over MQTT (:mod:`bench.suite`) stays the figure to quote. The two
``callgrind_control`` calls are counted too (≈ 0.5 M instructions: ≈ 170 a message at the
default 3 000, noticeable only with tiny N). Run::

    .venv/bin/python -m bench.instructions --against HEAD~3

``--without STAGE[:KIND,KIND…]`` takes a stage away in the measured process (by patching the
measured tree's classes in the child, so it works on older refs too), for all events or only
for the kinds named: the difference to a full count is what the stage costs (docs/
benchmarks.md, "Thirteenth pass"). The stages are :data:`STAGES`. Each patch is a Python call of
its own per message or event (≈ 1–2 k instructions a message), so differences that small are
the patch, not the stage.

Needs ``valgrind`` (the Debian package); stdout gets one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

# In the child these come from the measured tree (``PYTHONPATH``), whichever ref it is.
from bench.run import STREAM_START, StreamPace, build_messages, hub_settings
from hub.app import Hub
from hub.clock import ManualClock
from hub.ingest.heap import settle_heap
from simulators.community import generate

#: callgrind's summary line on stderr: ``==PID== Collected : 608067324``.
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
_REPO = Path(__file__).resolve().parent.parent


#: What ``--without`` can take away: the events themselves (as if the adapters had not made
#: them), the rules (``Evaluator.on_event`` decides nothing), the health-point check and its
#: points, and device state.
STAGES = ("events", "rules", "health_points", "device_state")


class InstructionsError(RuntimeError):
    """valgrind is missing, or a measured run failed (its stderr's tail is in the message)."""


def collected(stderr: str) -> int:
    """The instruction count in callgrind's stderr."""
    found = _COLLECTED.findall(stderr)
    if not found:
        raise InstructionsError(f"no instruction count in callgrind's output: {stderr[-2000:]}")
    return int(found[-1])


def parse_without(spec: str) -> tuple[str, frozenset[str] | None]:
    """``STAGE`` or ``STAGE:kind,kind`` → (stage, the event kinds or ``None`` for all)."""
    stage, colon, kinds = spec.partition(":")
    if stage not in STAGES:
        raise InstructionsError(f"--without {spec!r}: the stage must be one of {', '.join(STAGES)}")
    names = frozenset(k for k in kinds.split(",") if k)
    if colon and not names:
        raise InstructionsError(f"--without {spec!r}: name kinds after the colon, or no colon")
    return stage, names or None


def taken_away(specs: Sequence[str]) -> contextlib.ExitStack:
    """The stages of ``specs`` taken away (patched) until the returned stack is closed.

    Imports from whichever tree is first on the path: the child's measured tree. Each patch
    tests ``event.kind`` against a set of members (a C-level lookup), so its own cost stays
    small next to the stage's: one Python call per message (``events``) or per event.
    """
    from adapters.events import EventKind  # noqa: PLC0415
    from adapters.router import AdapterRouter  # noqa: PLC0415
    from hub.ingest.device_state import DeviceStates  # noqa: PLC0415
    from hub.ingest.pipeline import Pipeline  # noqa: PLC0415
    from rules.evaluator import Evaluator  # noqa: PLC0415

    stack = contextlib.ExitStack()
    for spec in specs:
        stage, names = parse_without(spec)
        try:
            kinds = frozenset(EventKind) if names is None else frozenset(EventKind(n) for n in names)
        except ValueError as exc:
            raise InstructionsError(f"--without {spec!r}: {exc}") from None
        if stage == "events":
            decode = AdapterRouter.decode

            def kept(self: Any, *args: Any, _d: Any = decode, _k: Any = kinds) -> list[Any]:
                return [e for e in _d(self, *args) if e.kind not in _k]

            stack.enter_context(mock.patch.object(AdapterRouter, "decode", kept))
        elif stage == "rules":
            on_event = Evaluator.on_event

            # ``*rest``: the report's time a newer tree passes along (older ones box their own).
            def decided(
                self: Any, event: Any, subject: Any, *rest: Any, _o: Any = on_event, _k: Any = kinds
            ) -> Any:
                return [] if event.kind in _k else _o(self, event, subject, *rest)

            stack.enter_context(mock.patch.object(Evaluator, "on_event", decided))
        elif stage == "health_points":
            due = Pipeline._health_point_due

            # ``*rest``: the device state a newer tree passes along (older ones look it up).
            def charted(self: Any, event: Any, *rest: Any, _d: Any = due, _k: Any = kinds) -> Any:
                return False if event.kind in _k else _d(self, event, *rest)

            stack.enter_context(mock.patch.object(Pipeline, "_health_point_due", charted))
        else:
            record = DeviceStates.record

            # Returns what ``record`` returns (a newer tree's pipeline uses the device state it
            # returns; ``None`` there means "no state", as it does for a kind taken away).
            # ``*rest``: the registry's subject a newer tree passes along (it holds the state).
            def recorded(self: Any, event: Any, *rest: Any, _r: Any = record, _k: Any = kinds) -> Any:
                return None if event.kind in _k else _r(self, event, *rest)

            stack.enter_context(mock.patch.object(DeviceStates, "record", recorded))
    return stack


def measure(
    source: Path, *, messages: int, warmup: int, seed: int, without: Sequence[str] = ()
) -> dict[str, float]:
    """Instructions per message for the code in ``source`` (a checkout of this repository),
    with the stages named in ``without`` taken away (:func:`parse_without`)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None or shutil.which("callgrind_control") is None:
        raise InstructionsError("valgrind is not installed (Debian: apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="linli-instructions-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(source), "PYTHONHASHSEED": "0"}
        command = [
            valgrind,
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={tmp}/callgrind.out",
            sys.executable,
            # -P: no script directory on the path (this tree's bench/ would shadow modules).
            "-P",
            # This file runs the child even for an older ref (which may not have it); the
            # hub and the stream are imported from ``source`` (first on the path).
            str(Path(__file__).resolve()),
            "--child",
            f"--messages={messages}",
            f"--warmup={warmup}",
            f"--seed={seed}",
            *(f"--without={spec}" for spec in without),
        ]
        done = subprocess.run(command, cwd=source, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise InstructionsError(f"measured run failed (rc {done.returncode}): {done.stderr[-2000:]}")
        count = collected(done.stderr)
        events = json.loads(done.stdout.strip().splitlines()[-1])["events"]
    return {
        "instructions_per_msg": round(count / messages),
        "events_per_msg": round(events / messages, 3),
    }


def _child(messages: int, warmup: int, seed: int, specs: Sequence[str] = ()) -> None:
    """Runs under callgrind: instrumentation only around the measured messages.

    The loop is :func:`bench.run.measure_pipeline`'s with a switch between warm-up and the
    measured messages. It is written here, not shared, because the child imports ``bench.run``
    from the measured tree: an older ref has only the long-standing pieces used below.
    """

    def instrument(state: str) -> None:
        subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True, capture_output=True)

    async def run(tmp: Path) -> int:
        community = generate(
            seed=seed, grids=10, buildings_per_grid=10, elders_per_building=10, parking_per_grid=5
        )
        community_file = tmp / "community.yaml"
        community.write(community_file)
        stream, _ = build_messages(community.devices, warmup + messages, seed=seed)
        settings = hub_settings(
            broker_url="mqtt://127.0.0.1:1",
            data_dir=tmp / "data",
            community_file=community_file,
            client_id="linli-bench-instructions",
        )
        hub = Hub(settings=settings, clock=ManualClock(start=STREAM_START))
        settle_heap()  # what Hub.start does once start-up is done
        pace = StreamPace(hub, len(stream))
        handle, before, after = hub.pipeline.handle, pace.before, pace.after
        try:
            for topic, payload in stream[:warmup]:
                before()
                handle(topic, payload, 0, False)
                after()
            events = hub.pipeline.stats.events
            instrument("on")
            for topic, payload in stream[warmup:]:
                before()
                handle(topic, payload, 0, False)
                after()
            instrument("off")
            return hub.pipeline.stats.events - events
        finally:
            hub.close()

    with tempfile.TemporaryDirectory(prefix="linli-instructions-child-") as tmp, taken_away(specs):
        events = asyncio.run(run(Path(tmp)))
    print(json.dumps({"events": events}), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=3_000, help="measured messages")
    p.add_argument("--warmup", type=int, default=20_000, help="messages before the measured ones")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--against", help="a git ref to measure in the same run (a temporary worktree)")
    p.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="STAGE[:KINDS]",
        help=f"take a stage away ({', '.join(STAGES)}), for all events or the kinds named "
        "(e.g. rules:battery); repeatable",
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.messages, args.warmup, args.seed, args.without)
        return 0
    try:
        for spec in args.without:
            parse_without(spec)
    except InstructionsError as exc:
        p.error(str(exc))
    report: dict[str, object] = {
        "bench": "instructions",
        "messages": args.messages,
        "warmup": args.warmup,
        "without": args.without,
    }
    try:
        report["this"] = measure(
            _REPO, messages=args.messages, warmup=args.warmup, seed=args.seed, without=args.without
        )
        if args.against:
            with tempfile.TemporaryDirectory(prefix="linli-instructions-ref-") as tmp:
                tree = Path(tmp) / "tree"
                subprocess.run(
                    ["git", "-C", str(_REPO), "worktree", "add", "--detach", "-f", str(tree), args.against],
                    check=True,
                    capture_output=True,
                )
                try:
                    against = measure(
                        tree, messages=args.messages, warmup=args.warmup, seed=args.seed, without=args.without
                    )
                finally:
                    subprocess.run(
                        ["git", "-C", str(_REPO), "worktree", "remove", "--force", str(tree)],
                        check=False,
                        capture_output=True,
                    )
            report["against"] = {"ref": args.against, **against}
            this = report["this"]
            assert isinstance(this, dict)
            report["ratio"] = round(this["instructions_per_msg"] / against["instructions_per_msg"], 4)
    except (InstructionsError, subprocess.CalledProcessError) as exc:
        print(f"instructions: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
