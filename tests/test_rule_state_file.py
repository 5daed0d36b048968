"""Rule state in its own SQLite file, written off the event loop: nothing lost, newest value wins,
one statement per batch, failures retried and reported, and a store of an older version handed over."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.app import Hub
from hub.cli.backup import RULE_STATE_FILE, STORE_FILE, Layout, backup, restore
from hub.clock import ManualClock
from hub.errors import StoreError
from hub.storage import rule_state_file
from hub.storage.rule_state import RuleStateStore
from hub.storage.rule_state_file import RuleStateFile, path_beside, slot_row
from hub.storage.schema import RULE_STATE_TABLE
from hub.storage.store import Store
from rules import MemoryState, Slot
from tests.helpers import SOS_BUTTON, Phone, eventually, hub_settings, publisher
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

T0 = 1_795_371_180.0
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()


def wait_until(check: Any, within: float = 10.0) -> None:
    """For the writer thread's state, from a test without an event loop."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def stored(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {
            (r, s): orjson.loads(st) for r, s, st in db.execute("SELECT rule, subject, state FROM rule_state")
        }


def slots_of(hub: Hub) -> dict[tuple[str, str], Any]:
    return {(s["rule"], s["subject"]): s["state"] for s in hub.evaluator.state.snapshot()["slots"]}


def rule_state_check(hub: Hub) -> bool:
    (check,) = (c for c in hub.readiness().checks if c.name == "rule_state")
    return check.ok


def up(rule: str, subject: str, **state: Any) -> dict[tuple[str, str], str]:
    return {(rule, subject): slot_row(rule, subject, {"trigger": "absence", **state})}


@pytest.fixture
def file(tmp_path: Path) -> Any:
    opened = RuleStateFile(path=tmp_path / "rs.sqlite3", retry_s=0.05)
    yield opened
    with contextlib.suppress(StoreError):
        opened.close()


def test_the_newest_value_wins_and_deletes_are_deletes(file: RuleStateFile) -> None:
    file.start()
    file.put(up("r", "a", due=1.0))
    file.put(up("r", "b", due=2.0))
    file.put(up("r", "a", due=3.0))
    file.put({}, [("r", "b")])
    file.put(up("r", "c", due=4.0), [("r", "gone-already")])
    assert file.wait(10)
    assert stored(file.path) == {
        ("r", "a"): {"trigger": "absence", "due": 3.0},
        ("r", "c"): {"trigger": "absence", "due": 4.0},
    }
    file.put({}, [("r", "a")])
    file.put(up("r", "a", due=5.0))  # put back after the delete: the put wins
    file.close()
    assert stored(file.path)[("r", "a")] == {"trigger": "absence", "due": 5.0}


def test_a_batch_is_one_statement_not_one_per_row(file: RuleStateFile) -> None:
    """From a thread, every row of ``executemany`` waited for the busy event loop's GIL (5 ms a row)."""
    statements: list[str] = []
    file._db.set_trace_callback(statements.append)
    gate = threading.Event()
    original = file._write

    def gated(*args: Any) -> None:
        gate.wait(10)
        original(*args)

    file._write = gated  # type: ignore[method-assign]
    file.start()
    file.put(up("r", "warm"))
    for i in range(2_000):
        file.put(up("r", f"dev-{i}", due=float(i)), [("r", f"old-{i}")] if i % 2 else ())
    gate.set()
    assert file.wait(10)
    inserts = [s for s in statements if s.startswith("INSERT")]
    deletes = [s for s in statements if s.startswith("DELETE")]
    assert len(stored(file.path)) == 2_001
    # The first batch may have taken only "warm"; everything else came in one more batch.
    assert 1 <= len(inserts) <= 2 and 1 <= len(deletes) <= 2


def test_a_write_that_fails_is_retried_under_newer_values_and_reported(file: RuleStateFile) -> None:
    failures = 3
    original = file._write

    def flaky(*args: Any) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise sqlite3.OperationalError("database or disk is full")
        original(*args)

    file._write = flaky  # type: ignore[method-assign]
    file.start()
    file.put(up("r", "a", due=1.0))
    file.put(up("r", "b", due=1.0))
    wait_until(lambda: file.failing is not None)
    assert "disk is full" in (file.failing or "")
    file.put(up("r", "a", due=2.0))  # newer than the failed batch's
    wait_until(lambda: failures == 0 and file.pending == 0 and file.failing is None)
    assert stored(file.path) == {
        ("r", "a"): {"trigger": "absence", "due": 2.0},
        ("r", "b"): {"trigger": "absence", "due": 1.0},
    }


def test_close_writes_everything_handed_over_or_says_what_it_could_not(tmp_path: Path) -> None:
    first = RuleStateFile(path=tmp_path / "a.sqlite3")
    first.start()
    for i in range(500):
        first.put(up("r", f"d{i}", due=float(i)))
    first.close()
    assert len(stored(first.path)) == 500
    first.close()  # idempotent

    refused = RuleStateFile(path=tmp_path / "b.sqlite3", retry_s=0.01)

    def full(*args: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    refused._write = full  # type: ignore[method-assign]
    refused.start()
    refused.put(up("r", "x"))
    with pytest.raises(StoreError, match="1 rule-state slots not written: OperationalError"):
        refused.close()


def test_the_file_is_beside_the_store() -> None:
    assert path_beside(Path("/var/lib/linli") / STORE_FILE) == Path("/var/lib/linli") / RULE_STATE_FILE


def test_a_store_of_an_older_version_hands_its_rule_state_over(tmp_path: Path) -> None:
    store = Store(path=tmp_path / STORE_FILE)
    old = RuleStateStore(store=store)
    state = MemoryState()
    state.put(("elderly.no_door", "door-1"), Slot("absence", due=T0 + 86_400.5, last_ts=T0))
    state.put(("parking.fire_lane", "lane-1"), Slot("duration", due=T0 + 60, value=1.0))
    assert old.flush(state) == 2

    moved = RuleStateStore(store=store, file=RuleStateFile(path=path_beside(store.path or Path())))
    restored = moved.load()
    assert restored.snapshot() == state.snapshot()
    assert store.execute("SELECT count(*) FROM rule_state").fetchone()[0] == 0, "the table is emptied"
    assert moved.count() == 2
    # From now on the file has them: a change lands there, the store's table stays empty.
    restored.put(("elderly.no_door", "door-1"), Slot("absence", due=T0 + 90_000.0, last_ts=T0 + 1))
    assert moved.flush(restored) == 1
    moved.close()
    assert stored(path_beside(store.path or Path()))[("elderly.no_door", "door-1")]["due"] == T0 + 90_000.0
    assert store.execute("SELECT count(*) FROM rule_state").fetchone()[0] == 0

    # A crash between writing the file and emptying the table leaves both: the file's rows win.
    with store.transaction() as db:
        db.execute(
            "INSERT INTO rule_state VALUES ('elderly.no_door', 'door-1', ?)", (b'{"trigger":"absence"}',)
        )
    again = RuleStateStore(store=store, file=RuleStateFile(path=path_beside(store.path or Path())))
    slot = again.load().get(("elderly.no_door", "door-1"))
    assert slot is not None and slot.due == T0 + 90_000.0
    assert store.execute("SELECT count(*) FROM rule_state").fetchone()[0] == 0
    again.close()
    store.close()


def test_a_restart_reads_slots_when_used_and_a_damaged_row_is_deleted_not_fatal(tmp_path: Path) -> None:
    """Slots come back unread with their timers (SQLite reads ``due`` out of the JSON), rows an
    older version wrote as bytes included; a row that is not a slot is dropped when first read
    and deleted from the file, and does not stop the hub from starting."""
    store = Store(path=tmp_path / STORE_FILE)
    path = path_beside(store.path or Path())
    first = RuleStateStore(store=store, file=RuleStateFile(path=path))
    state = first.load()
    state.put(("device.offline", "door-1"), Slot("absence", since=T0, due=T0 + 7200))
    state.put(("device.offline", "door-2"), Slot("absence", since=T0, due=T0 + 3600))
    first.flush(state)
    first.close()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "INSERT INTO rule_state VALUES ('device.offline', 'door-3', ?)",
            (orjson.dumps({"trigger": "absence", "since": T0, "due": T0 + 60}),),  # bytes: a BLOB
        )
        db.execute("INSERT INTO rule_state VALUES ('device.offline', 'door-4', '{\"trigger\":\"abs')")

    again = RuleStateStore(store=store, file=RuleStateFile(path=path))
    restored = again.load()
    assert len(restored) == 4
    assert restored.pop_due(T0 + 3600) == [("device.offline", "door-3"), ("device.offline", "door-2")]
    assert restored.get(("device.offline", "door-4")) is None
    assert again.flush(restored) == 1  # the damaged row's delete
    again.close()
    assert sorted(stored(path)) == [("device.offline", f"door-{i}") for i in (1, 2, 3)]
    store.close()


def test_a_file_of_an_older_version_gets_its_timer_column_rows_and_timers_kept(tmp_path: Path) -> None:
    """A file written before ``due`` was a column of its own: opened, its rows are all kept, their
    timers come back from the new column (a BLOB row's and an integer due included), a damaged
    row has none, and from then on every write keeps the column in step with the state."""
    path = tmp_path / "rs.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(RULE_STATE_TABLE)  # the file's table as an older version made it
        db.executemany(
            "INSERT INTO rule_state VALUES (?, ?, ?)",
            [
                ("device.offline", "door-1", orjson.dumps({"trigger": "absence", "due": T0 + 60})),
                ("device.offline", "door-2", '{"trigger":"absence","due":1795371300}'),
                ("doors.held_open", "door-1", '{"trigger":"duration","since":1.0}'),
                ("device.offline", "door-3", '{"trigger":"abs'),
            ],
        )
    opened = RuleStateFile(path=path)
    rows = {(rule, subject): due for rule, subject, _, due in opened.rows()}
    assert rows == {
        ("device.offline", "door-1"): T0 + 60,
        ("device.offline", "door-2"): 1_795_371_300.0,
        ("doors.held_open", "door-1"): None,
        ("device.offline", "door-3"): None,
    }
    opened.start()
    opened.put(up("device.offline", "door-1", due=T0 + 120.5), [("device.offline", "door-2")])
    opened.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute(
            "SELECT due FROM rule_state WHERE subject = 'door-1' AND rule = 'device.offline'"
        ).fetchone() == (T0 + 120.5,)
        assert db.execute("SELECT count(*) FROM rule_state").fetchone() == (3,)
        # A hand edit of the state moves its timer with it: the column is SQLite's, never stale.
        db.execute(
            """UPDATE rule_state SET state = '{"trigger":"duration","due":7.5}' WHERE rule = 'doors.held_open'"""
        )
        db.commit()
    reopened = RuleStateFile(path=path)
    assert {(r, s): due for r, s, _, due in reopened.rows()}[("doors.held_open", "door-1")] == 7.5
    reopened.close()


def _old_file(path: Path, rows: int) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(RULE_STATE_TABLE)  # the file's table as an older version made it
        db.executemany(
            "INSERT INTO rule_state VALUES ('device.offline', ?, ?)",
            [(f"door-{i}", f'{{"trigger":"absence","due":{T0 + i}}}') for i in range(rows)],
        )


def test_a_file_whose_move_to_the_new_table_fails_still_starts_and_moves_at_a_later_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk fills while the table is made anew: nothing is half done, the hub starts with
    every slot and timer (read from the JSON as before), says why, and the next start moves it."""
    path = tmp_path / "rs.sqlite3"
    _old_file(path, 2000)
    connect = sqlite3.connect

    def full_disk(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = connect(*args, **kwargs)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLITE_FULL past this: a full disk
        return db

    monkeypatch.setattr(sqlite3, "connect", full_disk)
    opened = RuleStateFile(path=path)
    monkeypatch.setattr(sqlite3, "connect", connect)
    assert "timers not moved to a column of their own" in caplog.text and "full" in caplog.text
    rows = {subject: due for _, subject, _, due in opened.rows()}
    assert len(rows) == 2000 and rows["door-7"] == T0 + 7
    opened.start()
    opened.put(up("device.offline", "door-7", due=T0 + 99.5))
    opened.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert "due" not in {r[1] for r in db.execute("PRAGMA table_xinfo(rule_state)")}, "left as it was"
    again = RuleStateFile(path=path)
    rows = {subject: due for _, subject, _, due in again.rows()}
    assert len(rows) == 2000 and rows["door-7"] == T0 + 99.5
    again.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert "due" in {r[1] for r in db.execute("PRAGMA table_xinfo(rule_state)")}, "moved this time"


def test_with_an_sqlite_before_generated_columns_timers_are_read_from_the_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rule_state_file, "GENERATED_COLUMNS", (99, 0, 0))
    opened = RuleStateFile(path=tmp_path / "rs.sqlite3")
    opened.start()
    opened.put({**up("device.offline", "door-1", due=T0 + 1.5), **up("doors.held_open", "door-1")})
    opened.close()
    reopened = RuleStateFile(path=tmp_path / "rs.sqlite3")
    assert {(r, s): due for r, s, _, due in reopened.rows()} == {
        ("device.offline", "door-1"): T0 + 1.5,
        ("doors.held_open", "door-1"): None,
    }
    reopened.close()


def test_the_store_s_table_with_a_damaged_row_still_starts_and_deletes_it(store_url: str) -> None:
    """Without a file (PostgreSQL, a cluster node) every row is decoded at start: a row that is
    not JSON, or not a slot, is dropped and deleted; the others come back, timers included."""
    store = Store(url=store_url)
    table = RuleStateStore(store=store)
    state = table.load()
    state.put(("device.offline", "door-1"), Slot("absence", since=T0, due=T0 + 60))
    state.put(("device.offline", "door-2"), Slot("absence", since=T0, due=T0 + 120))
    assert table.flush(state) == 2
    with store.transaction() as db:
        db.execute("INSERT INTO rule_state VALUES ('device.offline', 'door-3', ?)", (b'{"trigger":"abs',))
        db.execute("INSERT INTO rule_state VALUES ('device.offline', 'door-4', ?)", (b'{"trigger":5}',))
    restored = RuleStateStore(store=store).load()
    assert restored.pop_due(T0 + 120) == [("device.offline", "door-1"), ("device.offline", "door-2")]
    assert table.flush(restored) == 2  # the damaged rows' deletes
    left = store.execute("SELECT subject FROM rule_state ORDER BY subject").fetchall()
    assert [str(row[0]) for row in left] == ["door-1", "door-2"]
    # A community taken over (a cluster node) reads its subjects' rows the same way.
    with store.transaction() as db:
        db.execute("INSERT INTO rule_state VALUES ('device.offline', 'door-3', ?)", (b'{"trigger":"abs',))
    taken = table.load_subjects(["door-1", "door-3"])
    assert [(s, d is None) for _, s, d in taken] == [("door-1", False), ("door-3", True)]
    store.close()


def test_a_fenced_store_keeps_its_table() -> None:
    class Fenced:
        fenced = True

    with pytest.raises(ValueError, match="fenced"):
        RuleStateStore(store=Fenced(), file=object())  # type: ignore[arg-type]


async def test_a_hub_keeps_rule_state_in_the_file_across_a_restart_and_readiness_reports_a_refusal(
    tmp_path: Path, mosquitto_broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = hub_settings(tmp_path, mosquitto_broker)
    hub = Hub(settings=settings, clock=ManualClock(start=T0))
    try:
        hub.pipeline.handle(f"zigbee2mqtt/{SOS_BUTTON}", SOS, 1, False)
        hub.flush_rule_state(include_routine=True)
        before = slots_of(hub)
        assert before
        file = hub.rule_runtime.state_store.file
        assert file is not None and file.path == path_beside(hub.store.path or Path())
    finally:
        hub.close()
    assert hub.store.path is not None
    with contextlib.closing(sqlite3.connect(hub.store.path)) as db:
        assert db.execute("SELECT count(*) FROM rule_state").fetchone()[0] == 0
    assert len(stored(file.path)) == len(before)

    async with Hub(settings=settings, clock=ManualClock(start=T0)) as again:
        assert slots_of(again) == before
        assert rule_state_check(again)
        again_file = again.rule_runtime.state_store.file
        assert again_file is not None

        def full(*args: Any) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(again_file, "_write", full)
        again_file.put(up("r", "x"))
        await eventually(lambda: again_file.failing is not None, what="the write to fail")
        assert not rule_state_check(again) and not again.readiness().ready
        monkeypatch.undo()
        await eventually(lambda: again_file.failing is None, what="the retry to succeed")
        assert rule_state_check(again)


def test_backup_and_restore_take_the_rule_state_file_along(tmp_path: Path) -> None:
    data, saved, restored = tmp_path / "data", tmp_path / "saved", tmp_path / "restored"
    data.mkdir()
    store = Store(path=data / STORE_FILE)
    states = RuleStateStore(store=store, file=RuleStateFile(path=path_beside(data / STORE_FILE)))
    state = states.load()
    state.put(("elderly.no_door", "door-1"), Slot("absence", due=T0 + 86_400.5, last_ts=T0))
    states.flush(state)
    states.close()
    store.close()
    names = {e.name for e in backup(Layout.default(data), saved, clock=ManualClock(start=T0))}
    assert RULE_STATE_FILE in names
    restore(saved, Layout.default(restored))
    assert stored(restored / RULE_STATE_FILE) == stored(data / RULE_STATE_FILE)

    # An older backup (rule state in the store) restored over it: the file is not left behind.
    old_saved = tmp_path / "old"
    (saved / RULE_STATE_FILE).unlink()
    manifest = orjson.loads((saved / "manifest.json").read_bytes())
    manifest["files"] = [f for f in manifest["files"] if f["name"] != RULE_STATE_FILE]
    old_saved.mkdir()
    for entry in saved.iterdir():
        (old_saved / entry.name).write_bytes(entry.read_bytes())
    (old_saved / "manifest.json").write_bytes(orjson.dumps(manifest))
    restore(old_saved, Layout.default(restored), force=True)
    assert not (restored / RULE_STATE_FILE).exists()


async def test_an_sos_is_notified_while_the_rule_state_disk_is_stuck(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    """A slow sink must not hold up a press: with the rule-state writer blocked in a write (a dying
    SD card, a saturated disk), the press still becomes an alert, a case and the on-duty worker's
    notification; the rule state waits and is written once the disk answers."""
    settings = hub_settings(tmp_path, mosquitto_broker)
    workers = Phone(mosquitto_broker, client_id="stuck-disk-phone")
    await workers.start("linli/+/workers/+/notifications")
    async with Hub(settings=settings, clock=ManualClock(start=T0)) as hub:
        file = hub.rule_runtime.state_store.file
        assert file is not None
        stuck, entered = threading.Event(), threading.Event()
        original = file._write

        def blocked(*args: Any) -> None:
            entered.set()
            stuck.wait(60)
            original(*args)

        file._write = blocked  # type: ignore[method-assign]
        try:
            file.put(up("r", "x"))
            await asyncio.to_thread(entered.wait, 10)
            gateway = await publisher(mosquitto_broker, client_id="stuck-disk-gateway")
            gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS, qos=1)
            await eventually(hub.store.alerts, what="the alert")
            await eventually(lambda: workers.messages, what="the worker's notification")
            assert entered.is_set() and not stuck.is_set(), "all of it while the writer was stuck"
            assert file.pending > 0, "the press's rule state waits for the disk"
            await gateway.disconnect()
        finally:
            stuck.set()
        await eventually(lambda: file.pending == 0, what="the rule state written after all")
    await workers.stop()
    assert ("r", "x") in stored(file.path)


def test_a_restart_keys_the_slots_by_the_registry_s_own_device_ids(tmp_path: Path) -> None:
    """The restored rows' subjects are the strings the registry already holds (one copy of each
    device id, not one per row), from the file as from the store's table of an older version."""
    store = Store(path=tmp_path / STORE_FILE)
    state = MemoryState()
    for rule in ("device.offline", "device.battery_low_percent"):
        state.put((rule, "door-1"), Slot("absence", since=T0, due=T0 + 60))
    assert RuleStateStore(store=store).flush(state) == 2  # the table: moved to the file at load
    registry_id = "".join(("door", "-1"))
    for _ in range(2):  # the table's rows moved over, then the file's own
        again = RuleStateStore(store=store, file=RuleStateFile(path=path_beside(store.path or Path())))
        restored = again.load(names={registry_id: registry_id})
        assert [subject is registry_id for _, subject in restored.slot_keys()] == [True, True]
        again.close()
    store.close()


def test_a_hub_s_restored_slots_share_the_registry_s_device_ids(tmp_path: Path) -> None:
    settings = hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p"))
    first = Hub(settings=settings, clock=ManualClock(start=T0))
    first.close()  # its deadlines are written: the next hub restores them
    hub = Hub(settings=settings, clock=ManualClock(start=T0 + 1))
    try:
        keys = hub.evaluator.state.slot_keys()
        assert keys, "the registry's devices have absence deadlines"
        shared = [subject is hub.registry.subject(subject).device_id for _, subject in keys]
        assert all(shared), f"{shared.count(False)} of {len(keys)} keys hold a copy of their own"
    finally:
        hub.close()


async def test_an_unreadable_rule_state_file_is_set_aside_and_the_hub_starts(tmp_path: Path) -> None:
    """A power cut on a cheap SD card, a half-copied restore: the rule-state file is no
    database. The hub refused to start (``StoreError: cannot open rule-state file``), so no
    press was handled until someone deleted it by hand. The file is derived state (a new
    install starts without one): it is moved aside, named in the log and in ``/readyz``'s
    warnings, and the hub starts with fresh rule timers."""
    settings = hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p"))
    Hub(settings=settings, clock=ManualClock(start=T0)).close()
    path = path_beside(tmp_path / "data" / STORE_FILE)
    assert path.exists()
    path.write_bytes(b"this is not an SQLite database " * 100)
    hub = Hub(settings=settings, clock=ManualClock(start=T0 + 60))
    try:
        hub.pipeline.handle(f"zigbee2mqtt/{SOS_BUTTON}", SOS, 1, False)
        assert len(hub.cases.case_ids()) == 1
        aside = path.with_name(path.name + ".unreadable")
        assert aside.read_bytes().startswith(b"this is not")
        assert any(str(aside) in warning for warning in hub.readiness().warnings)
    finally:
        hub.close()


def test_a_refused_sleep_does_not_stop_the_writer(
    file: RuleStateFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``time.sleep`` raising EINVAL (libfaketime after a clock step) killed the writer thread."""
    real_sleep = time.sleep
    refused = 0

    def sleep(seconds: float) -> None:
        nonlocal refused
        if refused < 3 and threading.current_thread().name == "linli-rule-state":
            refused += 1
            raise OSError(22, "Invalid argument")
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    file.start()
    file.put(up("r", "a", due=1.0))
    wait_until(lambda: file.pending == 0)
    file.put(up("r", "b", due=2.0))  # after the refused sleeps: the writer is still there
    wait_until(lambda: file.pending == 0 and ("r", "b") in stored(file.path))
    assert refused >= 1 and file.failing is None


def test_a_writer_that_dies_anyway_is_reported_not_silent(file: RuleStateFile) -> None:
    def broken(*args: Any) -> bool:
        raise MemoryError("no memory for the batch")

    file._drain_once = broken  # type: ignore[method-assign]
    file.start()
    file.put(up("r", "a", due=1.0))
    wait_until(lambda: file.failing is not None)
    assert "writer stopped" in (file.failing or "") and "MemoryError" in (file.failing or "")
