"""Request bodies that carry DICOM: one `application/dicom` instance, or several in a multipart.

STOW-RS (DICOM PS3.18) posts `multipart/related; type="application/dicom"`, one instance per
part; browsers and `curl -F` post `multipart/form-data`. Both are MIME multiparts (RFC 2046), so
one small parser handles them. It works on the whole body in memory: the request size limit
(`diagnostics.api.limits`) bounds it before it gets here.

A malformed request (no boundary, nothing in it, cut short) is refused whole with a
`RequestError`; a part that does not claim to be DICOM is refused on its own, so that the
other instances of the request can still be stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from diagnostics.errors import RequestError, UnsupportedMediaTypeError

DICOM = "application/dicom"
RELATED = "multipart/related"
FORM_DATA = "multipart/form-data"
OCTET_STREAM = "application/octet-stream"

ACCEPTED_HINT = (
    'send application/dicom (one instance), multipart/related; type="application/dicom" '
    "(STOW-RS) or multipart/form-data (file uploads)"
)

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf';\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


@dataclass(frozen=True)
class MediaType:
    """A parsed Content-Type: lower-case `type/subtype` and its parameters (names lower-case)."""

    essence: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, header: str | None) -> MediaType | None:
        if header is None or not header.strip():
            return None
        essence, _, rest = header.partition(";")
        params = {}
        for match in _PARAM.finditer(";" + rest):
            value = match.group(2).strip()
            if value.startswith('"') and value.endswith('"') and len(value) >= 2:
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[match.group(1).lower()] = value
        return cls(essence.strip().lower(), params)


@dataclass(frozen=True)
class Part:
    """One body part: an instance, if its content type says DICOM."""

    index: int
    """0-based position in the request."""
    data: bytes
    content_type: str | None
    """The part's media type without parameters, or None when it names none."""
    filename: str | None = None
    field_name: str | None = None

    @property
    def label(self) -> str:
        # Never the file name: a client's file names may hold a patient's name.
        return f"part {self.index + 1}"


def split_body(content_type: str | None, body: bytes) -> list[Part]:
    """The parts of a request body that carries DICOM, in order.

    Raises `UnsupportedMediaTypeError` for a Content-Type other than the three accepted and
    `RequestError` for an empty or malformed body.
    """
    media = MediaType.parse(content_type)
    if media is None:
        raise UnsupportedMediaTypeError(f"the request has no Content-Type: {ACCEPTED_HINT}")
    if media.essence in (DICOM, OCTET_STREAM):
        if not body:
            raise RequestError("the request body is empty: it must hold one DICOM instance")
        return [Part(0, body, DICOM)]
    if media.essence == RELATED:
        root = (media.params.get("type") or DICOM).lower()
        if root != DICOM:
            raise UnsupportedMediaTypeError(
                f'multipart/related with type="{root}" is not supported: the parts must be '
                'application/dicom instances (type="application/dicom")'
            )
        return _multipart(media, body)
    if media.essence == FORM_DATA:
        return _multipart(media, body)
    raise UnsupportedMediaTypeError(
        f"Content-Type {media.essence} is not accepted: {ACCEPTED_HINT}"
    )


def part_problem(part: Part, multipart: str) -> str | None:
    """Why a part cannot be a DICOM instance by its headers alone, or None if it may be one."""
    accepted: tuple[str | None, ...]
    if multipart == FORM_DATA:
        if part.filename is None and part.content_type is None:
            return f"{part.label} is the form field {part.field_name!r}, not a file upload"
        accepted = (DICOM, OCTET_STREAM, None)
    else:
        accepted = (DICOM, None)
    if part.content_type not in accepted:
        return f"{part.label}: Content-Type {part.content_type} is not application/dicom"
    return None


def split_dicom_parts(
    content_type: str | None, body: bytes
) -> tuple[list[Part], list[tuple[Part, RequestError]]]:
    """`split_body`, then the parts that may be DICOM and those refused by their headers."""
    parts = split_body(content_type, body)
    media = MediaType.parse(content_type)
    kind = media.essence if media is not None else DICOM
    accepted: list[Part] = []
    refused: list[tuple[Part, RequestError]] = []
    for part in parts:
        problem = part_problem(part, kind)
        if problem is None:
            accepted.append(part)
        else:
            refused.append((part, RequestError(problem)))
    return accepted, refused


def _multipart(media: MediaType, body: bytes) -> list[Part]:
    boundary = media.params.get("boundary")
    if not boundary:
        raise RequestError(
            f"{media.essence} request without a boundary parameter in its Content-Type "
            '(e.g. multipart/related; type="application/dicom"; boundary=XYZ)'
        )
    if len(boundary) > 200:
        raise RequestError("the multipart boundary is longer than 200 characters")
    if not body:
        raise RequestError(f"the request body is empty: a {media.essence} needs at least one part")
    delimiter = b"--" + boundary.encode("latin-1")
    if body.startswith(delimiter):
        position = 0
    else:
        found = body.find(b"\r\n" + delimiter)
        if found < 0:
            raise RequestError(
                f"the body does not contain the multipart boundary {boundary!r} named in "
                "its Content-Type"
            )
        position = found + 2
    parts: list[Part] = []
    while True:
        position += len(delimiter)
        if body[position : position + 2] == b"--":
            break  # the close delimiter
        line_end = body.find(b"\r\n", position)
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            raise RequestError(f"part {len(parts) + 1}: malformed boundary line")
        start = line_end + 2
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise RequestError(
                f"part {len(parts) + 1} is not followed by a boundary: the multipart body ends "
                f"without its closing '--{boundary}--' (was the upload cut short?)"
            )
        parts.append(_part(len(parts), body, start, end))
        position = end + 2
    if not parts:
        raise RequestError(f"the {media.essence} body holds no parts")
    return parts


def _part(index: int, body: bytes, start: int, end: int) -> Part:
    if body.startswith(b"\r\n", start):
        header_block, data_start = b"", start + 2
    else:
        blank = body.find(b"\r\n\r\n", start, end)
        if blank < 0:
            raise RequestError(f"part {index + 1}: no blank line ends its headers")
        header_block, data_start = body[start:blank], blank + 4
    headers = _headers(index, header_block)
    media = MediaType.parse(headers.get("content-type"))
    disposition = MediaType.parse(headers.get("content-disposition"))
    params = disposition.params if disposition is not None else {}
    return Part(
        index=index,
        data=body[data_start:end],
        content_type=media.essence if media is not None else None,
        filename=params.get("filename"),
        field_name=params.get("name"),
    )


def _headers(index: int, block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise RequestError(f"part {index + 1}: malformed header line {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers
