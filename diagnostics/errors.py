"""The project's one exception hierarchy.

Every error the library raises on purpose derives from `DiagnosticsError`, so callers (the CLI,
the service) can map each class to an exit code, an HTTP status or a DIMSE status in one place.
Messages say what is wrong and, where it helps, what to do about it.
"""

from __future__ import annotations


class DiagnosticsError(Exception):
    """Base class of every error this library raises deliberately."""


class InputError(DiagnosticsError):
    """The input (a file, bytes, a request) cannot be used; retrying it unchanged will not help."""


class NotDicomError(InputError):
    """The data is not a DICOM Part 10 file or dataset at all."""


class CorruptDicomError(InputError):
    """The data is DICOM but damaged or self-contradictory (truncated, inconsistent attributes)."""


class MissingPixelDataError(InputError):
    """An image SOP class without the Pixel Data that makes it an image."""


class NotAnImageError(InputError):
    """A valid non-image object (structured report, PDF, RT plan, presentation state, ...)."""


class UnsupportedDicomError(InputError):
    """Valid DICOM this library deliberately does not handle (codec, colour model, bit depth)."""


class ImageFileError(InputError):
    """A PNG or JPEG research image cannot be read or converted to a greyscale image."""


class TooLargeError(InputError):
    """The data exceeds a configured size limit; refused before it is decoded."""


class ConfigurationError(DiagnosticsError):
    """A setting, option or argument is invalid; the message names it."""


class DatasetError(InputError):
    """Training or evaluation data is inconsistent: labels that do not match the images, say."""


class ModelPackageError(DiagnosticsError):
    """A model package is missing, malformed, tampered with or incompatible; it is refused."""


class CheckpointError(DiagnosticsError):
    """A training checkpoint cannot be used: missing, corrupt, or for another architecture."""


class InferenceError(DiagnosticsError):
    """The model could not produce a usable answer: a runtime error, NaN output or a timeout.

    Screening turns this into a `failed` study, never into "no findings".
    """


class ReportError(DiagnosticsError):
    """A DICOM output (SR, overlay, presentation state) could not be built."""


class StoreError(DiagnosticsError):
    """The intake store could not record something (disk full, database unavailable).

    Nothing was acknowledged: the sender gets a failure status and must retry.
    """


class DiskFullError(StoreError):
    """Free disk space is under the service's floor (`--min-free-disk`): new instances are
    refused before anything is written (HTTP 507, C-STORE 0xA700); send again later."""


class BackupError(DiagnosticsError):
    """A backup cannot be made, or a backup folder is incomplete, altered or damaged; the
    message names the file. Nothing is restored from such a folder."""


class RequestError(InputError):
    """An HTTP request is malformed: no multipart boundary, an empty body, a broken part.

    The service answers 400; the message says what the client must change.
    """


class UnsupportedMediaTypeError(RequestError):
    """The request's Content-Type is not one the endpoint accepts (HTTP 415)."""


class DuplicateInstanceError(InputError):
    """A SOP Instance UID arrived again under a different study: refused, not silently kept."""


class RequestTimeoutError(RequestError):
    """A request body arrived too slowly (a stalled or deliberately slow client): HTTP 408."""


class WeakFindingError(DiagnosticsError):
    """Training would export a finding the data cannot support (too few positives) or the model
    did not learn (validation AUROC near chance); the message names the finding and what to do."""
