"""Request bodies: single instances, STOW-RS multipart/related, form uploads, and clear refusals."""

from __future__ import annotations

import pytest

from diagnostics.api.bodies import MediaType, split_body, split_dicom_parts
from diagnostics.errors import RequestError, UnsupportedMediaTypeError

RELATED = 'multipart/related; type="application/dicom"; boundary="{b}"'


def multipart(parts: list[tuple[list[str], bytes]], boundary: str, preamble: bytes = b"") -> bytes:
    body = preamble
    for headers, data in parts:
        body += f"\r\n--{boundary}\r\n".encode() + "".join(h + "\r\n" for h in headers).encode()
        body += b"\r\n" + data
    return body + f"\r\n--{boundary}--\r\n".encode()


def test_media_type_parameters_quoted_and_case_insensitive() -> None:
    media = MediaType.parse('Multipart/Related; Type="application/dicom"; boundary="a;b\\"c"')
    assert media is not None
    assert media.essence == "multipart/related"
    assert media.params == {"type": "application/dicom", "boundary": 'a;b"c'}
    assert MediaType.parse("  ") is None


def test_a_single_instance_body() -> None:
    (part,) = split_body("application/dicom", b"DICM...")
    assert (part.index, part.data, part.content_type) == (0, b"DICM...", "application/dicom")


def test_stow_multipart_keeps_binary_content_and_order() -> None:
    first, second = b"\r\n--not-the-boundary\r\n\x00\xff", b"second"
    body = multipart(
        [
            (["Content-Type: application/dicom"], first),
            (["Content-Type: application/dicom"], second),
        ],
        "XyZ",
        preamble=b"",  # dicomweb-client starts with CRLF before the first delimiter
    )
    parts = split_body(RELATED.format(b="XyZ"), body)
    assert [p.data for p in parts] == [first, second]
    assert all(p.content_type == "application/dicom" for p in parts)
    # and the same body with the first delimiter at the very start
    parts = split_body(RELATED.format(b="XyZ"), body[2:])
    assert [p.data for p in parts] == [first, second]


def test_form_upload_files_and_a_text_field() -> None:
    body = multipart(
        [
            (['Content-Disposition: form-data; name="file"; filename="a.dcm"'], b"A"),
            (
                [
                    'Content-Disposition: form-data; name="file"; filename="b.dcm"',
                    "Content-Type: application/octet-stream",
                ],
                b"B",
            ),
            (['Content-Disposition: form-data; name="note"'], b"hello"),
            (
                [
                    'Content-Disposition: form-data; name="file"; filename="c.txt"',
                    "Content-Type: text/plain",
                ],
                b"C",
            ),
        ],
        "form",
    )
    parts, refused = split_dicom_parts("multipart/form-data; boundary=form", body)
    assert [(p.data, p.filename) for p in parts] == [(b"A", "a.dcm"), (b"B", "b.dcm")]
    assert [(p.index, str(e)) for p, e in refused] == [
        (2, "part 3 is the form field 'note', not a file upload"),
        (3, "part 4: Content-Type text/plain is not application/dicom"),
    ]


def test_a_stow_part_without_content_type_is_taken_as_dicom_but_a_wrong_one_is_refused() -> None:
    body = multipart([([], b"A"), (["Content-Type: image/png"], b"B")], "q")
    parts, refused = split_dicom_parts(RELATED.format(b="q"), body)
    assert [p.data for p in parts] == [b"A"]
    assert [str(e) for _, e in refused] == [
        "part 2: Content-Type image/png is not application/dicom"
    ]


@pytest.mark.parametrize(
    ("content_type", "body", "error", "words"),
    [
        (None, b"x", UnsupportedMediaTypeError, "no Content-Type"),
        ("text/plain", b"x", UnsupportedMediaTypeError, "not accepted"),
        (
            'multipart/related; type="application/dicom+json"; boundary=b',
            b"--b--",
            UnsupportedMediaTypeError,
            "not supported",
        ),
        ("multipart/related; type=application/dicom", b"--b--", RequestError, "without a boundary"),
        ("multipart/form-data", b"--b--", RequestError, "without a boundary"),
        ("application/dicom", b"", RequestError, "empty"),
        ("multipart/related; boundary=b", b"", RequestError, "empty"),
        ("multipart/related; boundary=b", b"plain bytes", RequestError, "does not contain"),
        ("multipart/related; boundary=b", b"--b--\r\n", RequestError, "no parts"),
        ("multipart/related; boundary=b", b"--b\r\n\r\ndata", RequestError, "cut short"),
        (
            "multipart/related; boundary=b",
            b"--b\r\nContent-Type: x\r\n--b--",
            RequestError,
            "no blank line",
        ),
        (
            "multipart/related; boundary=b",
            b"--b\r\nbroken header\r\n\r\nx\r\n--b--",
            RequestError,
            "malformed header",
        ),
    ],
)
def test_malformed_requests_are_refused_whole_with_a_reason(
    content_type: str | None, body: bytes, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        split_body(content_type, body)


def test_labels_never_carry_client_file_names() -> None:
    body = multipart(
        [(['Content-Disposition: form-data; name="f"; filename="DOE^JOHN.dcm"'], b"")], "z"
    )
    (part,) = split_body("multipart/form-data; boundary=z", body)
    assert part.filename == "DOE^JOHN.dcm"
    assert "DOE" not in part.label
