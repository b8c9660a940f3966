"""Reads on several threads never record each other's pydicom warnings.

pydicom reports some damage only as a warning, which the readers turn into a refusal. Warnings
are process-wide, so without `diagnostics.dicom.warn` a damaged upload on one intake thread
could fail a healthy one decoded at the same moment on another.
"""

from __future__ import annotations

import threading

from diagnostics.dicom import read_instance
from diagnostics.errors import CorruptDicomError
from tests.dicom.corpus import Corpus

ROUNDS = 150


def test_a_damaged_read_never_fails_a_healthy_one_on_another_thread(corpus: Corpus) -> None:
    damaged = corpus.malformed["rle-segment-overrun"].path  # refused because pydicom warns
    healthy = next(case.path for case in corpus.valid.values() if not case.lossy)
    failures: list[str] = []
    damaged_refused = 0
    start = threading.Barrier(2)

    def read_damaged() -> None:
        nonlocal damaged_refused
        start.wait()
        for _ in range(ROUNDS):
            try:
                read_instance(damaged)
            except CorruptDicomError:
                damaged_refused += 1

    def read_healthy() -> None:
        start.wait()
        for _ in range(ROUNDS):
            try:
                read_instance(healthy)
            except CorruptDicomError as exc:
                failures.append(str(exc))

    threads = [threading.Thread(target=read_damaged), threading.Thread(target=read_healthy)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert damaged_refused == ROUNDS  # the damage is still caught on its own thread
    assert not failures, f"{len(failures)} healthy reads failed, e.g. {failures[0]}"
