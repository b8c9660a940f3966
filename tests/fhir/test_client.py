"""Posting bundles to a FHIR server started here, which validates and stores what it gets."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from diagnostics.errors import ConfigurationError
from diagnostics.fhir import FhirBundleError, Reader, build_bundle
from diagnostics.fhir.client import FhirDeliveryError, authorization, post_bundle
from diagnostics.package import Manifest
from tests.fhir.sample import analysed, context
from tests.fhir.server import FhirServer, running

TOKEN = "fhir-test-token-0123456789"


@pytest.fixture
def server() -> Iterator[FhirServer]:
    with running() as started:
        yield started


def write(path: Path, bundle: dict[str, object]) -> Path:
    path.write_text(json.dumps(bundle))
    return path


def test_a_bundle_is_stored_once_however_often_it_is_sent(
    tmp_path: Path, server: FhirServer, manifest: Manifest
) -> None:
    result = analysed(manifest)
    path = write(tmp_path / "b.json", build_bundle(result, 1, context(manifest)))
    for _ in range(3):
        post_bundle(path, server.url, None)
    assert len(server.transactions) == 3
    (report,) = server.of_type("DiagnosticReport")
    observations = server.of_type("Observation")
    (device,) = server.of_type("Device")
    assert len(observations) == len(result.findings)
    assert sorted(r["reference"] for r in report["result"]) == sorted(
        f"Observation/{o['id']}" for o in observations
    )
    assert {o["device"]["reference"] for o in observations} == {f"Device/{device['id']}"}


def test_the_final_report_updates_the_preliminary_one(
    tmp_path: Path, server: FhirServer, manifest: Manifest
) -> None:
    result = analysed(manifest)
    first = write(tmp_path / "p.json", build_bundle(result, 1, context(manifest)))
    reader = Reader(actor="ui:reader", read_at="2026-12-03T10:00:00+00:00")
    final = write(tmp_path / "f.json", build_bundle(result, 1, context(manifest), reader))
    post_bundle(first, server.url, None)
    (before,) = server.of_type("DiagnosticReport")
    post_bundle(final, server.url, None)
    post_bundle(first, server.url, None)  # a late resend of the preliminary changes nothing
    (after,) = server.of_type("DiagnosticReport")
    assert after["id"] == before["id"] and after["status"] == "final"
    assert {o["status"] for o in server.of_type("Observation")} == {"final"}
    assert len(server.of_type("Observation")) == len(result.findings)


def test_a_bundle_that_does_not_validate_is_never_sent(
    tmp_path: Path, server: FhirServer, manifest: Manifest
) -> None:
    bundle = build_bundle(analysed(manifest), 1, context(manifest))
    bundle["entry"][-1]["resource"]["status"] = "normal"
    path = write(tmp_path / "bad.json", bundle)
    with pytest.raises(FhirBundleError, match="normal"):
        post_bundle(path, server.url, None)
    (tmp_path / "torn.json").write_text('{"resourceType": "Bundle", "ty')
    with pytest.raises(FhirBundleError, match="cannot be read"):
        post_bundle(tmp_path / "torn.json", server.url, None)
    assert server.posts == 0


def test_an_outage_and_a_refusal_are_delivery_errors(
    tmp_path: Path, server: FhirServer, manifest: Manifest
) -> None:
    path = write(tmp_path / "b.json", build_bundle(analysed(manifest), 1, context(manifest)))
    server.outage = True
    with pytest.raises(FhirDeliveryError, match="HTTP 503: down for maintenance"):
        post_bundle(path, server.url, None)
    server.outage = False
    with pytest.raises(FhirDeliveryError, match="HTTP 404"):
        post_bundle(path, server.url + "/Bundle", None)
    assert server.of_type("DiagnosticReport") == []
    server.stop()
    with pytest.raises(FhirDeliveryError, match="not reachable"):
        post_bundle(path, server.url, None, timeout_s=5)


@pytest.mark.parametrize(
    ("line", "header"),
    [
        (f"Bearer {TOKEN}\n", f"Bearer {TOKEN}"),
        ("Basic emr-user:pa ss:word", "Basic " + base64.b64encode(b"emr-user:pa ss:word").decode()),
    ],
)
def test_credentials_come_from_a_file(
    tmp_path: Path, manifest: Manifest, line: str, header: str
) -> None:
    secret = tmp_path / "auth"
    secret.write_text(line)
    assert authorization(secret) == header
    path = write(tmp_path / "b.json", build_bundle(analysed(manifest), 1, context(manifest)))
    with running(authorization=header) as server:
        with pytest.raises(FhirDeliveryError, match="HTTP 401"):
            post_bundle(path, server.url, None)
        post_bundle(path, server.url, authorization(secret))
        assert len(server.of_type("DiagnosticReport")) == 1


def test_a_malformed_credentials_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    secret = tmp_path / "auth"
    secret.write_text(f"Token {TOKEN}")
    with pytest.raises(ConfigurationError, match="Bearer <token>") as error:
        authorization(secret)
    assert TOKEN not in str(error.value)
    with pytest.raises(ConfigurationError, match="cannot be read"):
        authorization(tmp_path / "missing")
    assert authorization(None) is None
