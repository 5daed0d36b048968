"""Moving a scenario to a running hub's present: whole weeks later, same weekday and local time.

A scenario is written for a date (``start: 2026-03-03T09:55+08:00``); a hub that runs on real
time (``linli demo``) is long past it, and its clock only moves forward. Played against such a
hub the scenario starts the first whole number of weeks later that is still ahead of the hub's
clock, so rosters (``mon-fri`` shifts, day and night workers) and the expected times of day
hold as written. Official holidays are not weekdays: a scenario that depends on the working
calendar is best played on its own embedded hub.
"""

from __future__ import annotations

import math
from datetime import timedelta

from simulators.scenario import Scenario

WEEK_S = 7 * 86_400.0
#: Room between the hub's clock and the scenario's start: the hub runs on while the runner connects.
MARGIN_S = 60.0


def rebased(scenario: Scenario, *, now: float, margin_s: float = MARGIN_S) -> Scenario:
    """``scenario`` moved on by whole weeks so that it starts at least ``margin_s`` after ``now``."""
    behind = now + margin_s - scenario.start.timestamp()
    if behind <= 0:
        return scenario
    weeks = math.ceil(behind / WEEK_S)
    return scenario.model_copy(update={"start": scenario.start + timedelta(weeks=weeks)})
