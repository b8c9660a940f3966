"""Every malformed corpus case is refused with its own error class and a message naming why.

The class is checked exactly (not via isinstance) because callers map each class to a different
response, and the message is checked for the attribute or defect it must name, so a refusal for
the wrong reason fails. Cases decidable from the header must already fail in `read_info`, which
never reads pixel data: that is how the dimension bomb is shown to be refused before anything
is allocated.
"""

from __future__ import annotations

from collections import Counter

import pytest

from diagnostics.dicom import read_info, read_instance
from diagnostics.errors import (
    CorruptDicomError,
    InputError,
    MissingPixelDataError,
    NotAnImageError,
    NotDicomError,
    TooLargeError,
    UnsupportedDicomError,
)
from tests.dicom.corpus import MALFORMED_EXPECTATIONS, MALFORMED_NAMES, Corpus, MalformedCase

ERROR_CLASSES = (
    NotDicomError,
    CorruptDicomError,
    MissingPixelDataError,
    NotAnImageError,
    UnsupportedDicomError,
    TooLargeError,
)


def _refusal(case: MalformedCase, header_only: bool) -> InputError:
    read = read_info if header_only else read_instance
    with pytest.raises(InputError) as caught:
        read(case.path, case.expect.limits)
    return caught.value


def _check(case: MalformedCase, error: InputError) -> None:
    assert type(error) is case.expect.error, f"{case.name}: {type(error).__name__}: {error}"
    message = str(error).lower()
    missing = [word for word in case.expect.words if word.lower() not in message]
    assert not missing, f"{case.name}: message lacks {missing}: {error}"
    assert "\n" not in str(error), "messages must fit on the CLI's single error line"


@pytest.mark.parametrize("name", MALFORMED_NAMES)
def test_refused_with_its_error_class_and_reason(corpus: Corpus, name: str) -> None:
    case = corpus.malformed[name]
    _check(case, _refusal(case, header_only=False))


@pytest.mark.parametrize("name", [n for n in MALFORMED_NAMES if MALFORMED_EXPECTATIONS[n].header])
def test_header_defects_are_refused_without_reading_pixels(corpus: Corpus, name: str) -> None:
    case = corpus.malformed[name]
    _check(case, _refusal(case, header_only=True))


def test_messages_name_the_file_they_refuse(corpus: Corpus) -> None:
    case = corpus.malformed["rows-zero"]
    assert str(case.path) in str(_refusal(case, header_only=False))


def test_bytes_input_is_refused_the_same_way(corpus: Corpus) -> None:
    case = corpus.malformed["missing-study-uid"]
    with pytest.raises(CorruptDicomError, match="StudyInstanceUID"):
        read_instance(case.path.read_bytes())


def test_dimension_bomb_is_refused_by_the_header_size_check(corpus: Corpus) -> None:
    """The bomb's pixel data is 64 bytes: only the declared dimensions can have refused it."""
    case = corpus.malformed["dimension-bomb"]
    assert case.path.stat().st_size < 20_000
    error = _refusal(case, header_only=True)
    assert isinstance(error, TooLargeError)
    assert "65535 x 65535 pixels x 1000 frame(s)" in str(error)


def test_corpus_has_at_least_30_cases_covering_every_error_class() -> None:
    assert len(MALFORMED_NAMES) >= 30
    per_class = Counter(expect.error for expect in MALFORMED_EXPECTATIONS.values())
    assert set(per_class) == set(ERROR_CLASSES)


def test_truncations_are_reported_as_corrupt_wherever_the_cut_falls(corpus: Corpus) -> None:
    """Cutting a file anywhere inside an element is a truncation, never 'not DICOM' or a pass.

    Cuts that land exactly between two elements leave a shorter but well-formed dataset, which
    the reader cannot tell from a complete one; those are allowed any `InputError`.
    """
    data = corpus.valid["explicit-vr-little-endian"].path.read_bytes()
    wrong: list[str] = []
    for cut in range(133, len(data), 37):
        try:
            read_instance(data[:cut])
        except CorruptDicomError:
            continue
        except MissingPixelDataError:
            continue  # cut between elements, before the pixel data
        except InputError as error:
            wrong.append(f"{cut}: {type(error).__name__}: {error}")
        else:
            wrong.append(f"{cut}: accepted")
    assert not wrong, wrong[:5]
