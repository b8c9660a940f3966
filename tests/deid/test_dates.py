"""Date shifting: whole days, intervals kept, anything unparseable refused (None)."""

from __future__ import annotations

from diagnostics.deid.dates import shift_da, shift_dt, shift_timestamp


def test_da_moves_by_days_across_months_and_leap_years() -> None:
    assert shift_da("20240301", -1) == "20240229"
    assert shift_da("20240101", -365) == "20230101"
    assert shift_da(" 20200105 ", 70) == "20200315"


def test_da_refuses_what_is_not_one_full_date() -> None:
    for value in ("2024", "202403", "2024.03.01", "20240230", "20240101-20240201", ""):
        assert shift_da(value, -10) is None, value


def test_dt_keeps_the_time_and_drops_the_utc_offset() -> None:
    assert shift_dt("20240301123456.789+0100", -1) == "20240229123456.789"
    assert shift_dt("20240301", -1) == "20240229"
    assert shift_dt("202403", -1) is None  # no day: cannot move by days
    assert shift_dt("20240301XYZ", -1) is None


def test_timestamps_are_shifted_in_utc() -> None:
    assert shift_timestamp("2024-03-01T10:00:00+01:00", -1) == "2024-02-29T09:00:00+00:00"
    assert shift_timestamp(0.0, 1) == "1970-01-02T00:00:00+00:00"
    assert shift_timestamp("not a time", 1) is None
