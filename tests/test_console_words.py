"""Small parts of the console pages: the ingest rate on the hub's clock, and words for people."""

from __future__ import annotations

from hub.web.pages.overview import IngestMeter
from hub.web.pages.text import Lang, Words


def test_the_ingest_rate_is_measured_between_looks_on_the_hubs_clock() -> None:
    meter = IngestMeter()
    assert meter.sample(now=1000.0, count=0) is None, "one look says nothing about a rate"
    assert meter.sample(now=1000.5, count=400) is None, "looks closer than a second are not a rate"
    assert meter.sample(now=1002.0, count=1000) == 500.0
    assert meter.sample(now=1004.0, count=1000) == 0.0, "a quiet hub shows 0, not the last rate"


def test_durations_and_labels_in_both_languages() -> None:
    zh, en = Words(lang=Lang.ZH), Words(lang=Lang.EN)
    assert zh.duration(65) == "1 分 05 秒" and en.duration(3725) == "1 h 02 min"
    assert zh.duration(-3) == "0 分 00 秒", "a clock step never shows a negative time"
    assert (zh.of("light", "red"), en.of("light", "red")) == ("超时", "overdue")
    assert zh.of("category", "a_new_rule_category") == "a_new_rule_category", "unknown shows as-is"
    assert zh["overview"] == "总览" and en["overview"] == "Overview"
