"""DICOM ingestion: read and validate instances, decode pixels, group studies."""

from diagnostics.dicom.grouping import FileInfo, Series, Study, group_studies, iter_files, scan
from diagnostics.dicom.header import ReadLimits
from diagnostics.dicom.image import DicomImage, InstanceInfo, InstanceUids, Window
from diagnostics.dicom.reader import Source, read_info, read_instance, read_stream

__all__ = [
    "DicomImage",
    "FileInfo",
    "InstanceInfo",
    "InstanceUids",
    "ReadLimits",
    "Series",
    "Source",
    "Study",
    "Window",
    "group_studies",
    "iter_files",
    "read_info",
    "read_instance",
    "read_stream",
    "scan",
]
