"""The settings the serving tests' service runs with (`server` fixture), for tests that probe
them."""

TOKEN = "serving-test-token-0123456789"
MAX_REQUEST_BYTES = 2_000_000
"""Small enough for a 413 test, large enough for a few 384-pixel instances per request."""
READ_TIMEOUT_S = 2.0
"""Short, so that the slow-client test is quick; loopback uploads keep pace easily."""
