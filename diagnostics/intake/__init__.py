"""Durable intake: the store, the DICOM listener, the screening and outbox loops."""
