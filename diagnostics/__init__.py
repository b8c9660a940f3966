"""AI pre-screening for radiology: DICOM ingestion, synthetic studies, models and serving."""

__version__ = "0.1.0"
