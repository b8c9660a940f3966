"""The researcher path: datasets, training loop, metrics and calibration."""
