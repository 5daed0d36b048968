"""Smoke run of ``bench.memory_split`` with a tiny community: the harness works, not its figures.

Benchmarks never become timed tests: nothing here compares a figure with the 300 MB target.
What is checked is that every phase ran in its process and reported resident memory, that the
in-process reports reached the rules (more slots in service than at the start) and that the
derived columns are what the phases say.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import compiled, memory_split


def test_every_phase_reports_resident_memory(tmp_path: Path) -> None:
    result = memory_split.measure(300, data=tmp_path / "run")

    assert result["devices"] >= 300
    assert result["copies"] == 1  # the restart read the registry's start-up copy
    rss = result["rss_mb"]
    assert list(rss) == list(memory_split.PHASES)
    assert all(value > 0 for value in rss.values())
    # Every device's one report went through the rules: a slot or more per device in service.
    assert result["slots_in_service"] > result["slots_at_start"] > 0
    assert result["slots_in_service"] >= result["devices"]
    added = result["added_mb"]
    assert added["imports"] == rss["imports"]
    assert added["registry"] == round(rss["registry"] - rss["imports"], 1)
    assert added["hub"] == round(rss["hub"] - rss["imports"], 1)
    assert added["reported"] == round(rss["reported"] - rss["hub"], 1)
    assert "memory split" in memory_split.table(result)
    # Run from a checkout, the phases are on the sources: the result says so.
    assert result["build"] == "pure"
    assert result["compiled_modules"] == result["compiled_modules_registry"] == 0


@pytest.mark.pure_only("builds a tree of its own and checks the phases load it")
def test_the_phases_run_on_the_compiled_tree_they_are_given(tmp_path: Path) -> None:
    # A tree of one small hot-path module keeps the compiling to seconds; what is checked is that
    # the phases' processes import it from the tree and say so, not the figures.
    tree = compiled.build(tmp_path / "cache", files=("adapters/_json.py",))
    result = memory_split.measure(300, data=tmp_path / "run", tree=tree)
    assert result["build"] == "compiled"
    assert result["compiled_modules"] == result["compiled_modules_registry"] == 1
    assert "compiled build (1 hot-path modules compiled" in memory_split.table(result)


def _dies(conn: object, data: str) -> None:
    import os  # noqa: PLC0415 (in the phase's process)

    os._exit(3)


def test_a_phase_that_dies_is_reported_not_waited_for(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="_dies phase died without a result \\(exit code 3\\)"):
        memory_split._in_child(_dies, tmp_path)  # type: ignore[arg-type]
