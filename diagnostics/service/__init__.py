"""The running service: settings, runtime, DICOM listener, screening and outbox workers, the
sender, and the review, FHIR report and feedback folder logic; everything it keeps goes
through `diagnostics.store`."""
