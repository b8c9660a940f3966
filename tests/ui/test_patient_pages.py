"""The worklist's patient filters without a browser: the search box and local-day dates."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from diagnostics.errors import RequestError
from diagnostics.store.records import StudyFacts
from diagnostics.ui.pages import parse_filters
from diagnostics.ui.patient import iso_date, patient_context

TASHKENT = ZoneInfo("Asia/Tashkent")


def test_dates_are_whole_days_in_the_configured_zone() -> None:
    where, _ = parse_filters({"from": "2026-03-02", "to": "2026-03-02"}, (), TASHKENT)
    assert where.received_from == datetime(2026, 3, 2, tzinfo=TASHKENT).timestamp()
    assert where.received_before == datetime(2026, 3, 3, tzinfo=TASHKENT).timestamp()
    assert where.received_from == datetime.fromisoformat("2026-03-01T19:00:00+00:00").timestamp()


def test_the_search_is_trimmed_and_bounded_without_echoing_it() -> None:
    where, _ = parse_filters({"q": "  ACC-1 "}, ())
    assert where.search == "ACC-1"
    assert parse_filters({"q": "   "}, ())[0].search is None
    with pytest.raises(RequestError) as caught:
        parse_filters({"q": "Ivanov" * 20}, ())
    assert "Ivanov" not in str(caught.value)


def test_header_values_are_formatted_for_display() -> None:
    facts = StudyFacts(
        patient_name="Doe^John^^Dr",
        sex="m",
        age="003M",
        study_date="2024.05.12",
        study_time="0742",
        modalities=("CR", "DX"),
    )
    shown = patient_context("1.2.3", facts, None)
    assert shown.name == "Doe, Dr John" and shown.sex_age == "M, 3 mo"
    assert shown.study_when == "2024-05-12 07:42" and shown.exam == "CR, DX"
    assert shown.viewer_url is None and shown.patient_id is None
    assert iso_date("20240230") is None and iso_date("") is None
    assert patient_context("1.2.3", None, None).sex_age is None
