"""`--viewer-url` and `--timezone`: checked at start, round-tripped through the environment, and
the link filled in with URL-quoted values."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from diagnostics.errors import ConfigurationError
from diagnostics.serve import add_parser, config_from_args
from diagnostics.service.settings import ServiceSettings
from diagnostics.service.viewer import local_zone, viewer_link
from diagnostics.ui.patient import local_time

OHIF = "http://pacs:8042/ohif/viewer?StudyInstanceUIDs={study_uid}"


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


def test_settings_round_trip_through_the_environment(tmp_path: Path) -> None:
    template = (
        "weasis://?%24dicom%3Ars+-s+http%3A%2F%2Fpacs%2Fdicom-web+-r+%22studyUID%3D{study_uid}%22"
    )
    settings = ServiceSettings(storage=tmp_path, timezone="Asia/Tashkent", viewer_url=template)
    env = settings.to_env()
    assert env["DIAGNOSTICS_TIMEZONE"] == "Asia/Tashkent"
    assert env["DIAGNOSTICS_VIEWER_URL"] == template
    assert ServiceSettings.from_env(env) == settings


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("http://pacs/viewer?uid={study}", "unknown placeholder {study}"),
        ("http://pacs/viewer?uid={study_uid!r}", "unknown placeholder"),
        ("javascript:alert({study_uid})", "must start with http://, https://, weasis://"),
        ("ftp://pacs/{study_uid}", "must start with"),
        ("http://pacs/viewer?uid={study_uid", "unbalanced braces"),
    ],
)
def test_a_bad_viewer_url_stops_the_start_naming_the_flag(template: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match="--viewer-url") as caught:
        config_from_args(_args("--viewer-url", template), {})
    assert problem in str(caught.value)
    with pytest.raises(ConfigurationError, match="DIAGNOSTICS_VIEWER_URL"):
        ServiceSettings.from_env({"DIAGNOSTICS_VIEWER_URL": template})


def test_an_unknown_time_zone_stops_the_start() -> None:
    with pytest.raises(ConfigurationError, match=r"--timezone.*unknown time zone 'Mars/Olympus'"):
        config_from_args(_args("--timezone", "Mars/Olympus"), {})
    config = config_from_args(_args("--timezone", "Asia/Tashkent", "--viewer-url", OHIF), {})
    assert config.timezone == "Asia/Tashkent" and config.viewer_url == OHIF


def test_the_link_quotes_every_value() -> None:
    template = "https://pacs/view?study={study_uid}&acc={accession}&pid={patient_id}"
    link = viewer_link(template, "1.2.3", "A 1&2", "ID/7?x")
    assert link == "https://pacs/view?study=1.2.3&acc=A%201%262&pid=ID%2F7%3Fx"
    assert viewer_link(None, "1.2.3", "A1", "P1") is None
    # A link that needs a value the headers lack would open the wrong study: none instead.
    assert viewer_link(template, "1.2.3", None, "P1") is None
    assert viewer_link(OHIF, "1.2.3", None, None) == OHIF.replace("{study_uid}", "1.2.3")


def test_times_show_in_the_configured_zone() -> None:
    stamp = datetime(2026, 3, 1, 23, 30, tzinfo=UTC).timestamp()
    assert local_time(stamp, local_zone("Asia/Tashkent")) == "2026-03-02 04:30 +05"
    assert local_time(stamp, local_zone("UTC")) == "2026-03-01 23:30 UTC"
    assert isinstance(local_zone("Europe/Moscow"), ZoneInfo)
    local_zone(None)  # this machine's: never fails


def test_the_zone_is_looked_up_once_per_setting() -> None:
    """Every rendered timestamp asks for the zone: /etc/localtime is not read each time."""
    from diagnostics.ui.patient import zone_named

    zone_named.cache_clear()
    first = zone_named(None)
    assert all(zone_named(None) is first for _ in range(50))
    assert zone_named("Asia/Tashkent") == ZoneInfo("Asia/Tashkent")
    info = zone_named.cache_info()
    assert (info.misses, info.hits) == (2, 50)
