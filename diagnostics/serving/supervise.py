"""Running the server process for `diagnostics serve`: its log (this process is the log
file's one writer, the server's output relayed to it: `diagnostics.service.logs`), the
signals forwarded to it, and what it leaves behind ended. Apart from `diagnostics.serve` to
keep that module small; light to import (the CLI loads it before the server starts)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING

from diagnostics.errors import ConfigurationError

if TYPE_CHECKING:
    from diagnostics.service.settings import ServiceSettings

RELAY_DRAIN_S = 5.0
"""Seconds the server's last output lines are waited for once it has exited."""


def start_logging(config: ServiceSettings) -> list[logging.Handler]:
    """This process's log, which the server's output is relayed to (`service.logs`)."""
    from diagnostics.service.logs import configure_sink

    try:
        return configure_sink(
            config.log_level,
            config.log_format,
            sys.stderr,
            config.log_file,
            config.log_max_bytes,
            config.log_backups,
        )
    except OSError as exc:
        raise ConfigurationError(f"--log-file {config.log_file}: {exc.strerror}") from None


def run_server(
    command: list[str],
    env: Mapping[str, str],
    handlers: Sequence[logging.Handler] = (),
    config: ServiceSettings | None = None,
) -> int:
    """Run the server in its own session; forward SIGTERM, SIGINT and SIGHUP (as SIGTERM);
    return its exit status.

    The handlers are in place before the server starts, so a signal that arrives while it is
    starting is delivered too, instead of ending this process and orphaning the server. With
    log `handlers`, the server's output comes through a pipe and is written to them: this
    process is the log file's one writer (`diagnostics.service.logs`).
    """
    process: subprocess.Popen[bytes] | None = None
    pending: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        signum = signal.SIGTERM if signum == signal.SIGHUP else signum
        if process is None:
            pending.append(signum)
        elif process.poll() is None:
            process.send_signal(signum)

    watched = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {sig: signal.signal(sig, forward) for sig in watched}
    relayed = bool(handlers) and config is not None
    relay: threading.Thread | None = None
    try:
        process = subprocess.Popen(
            command,
            env=dict(env),
            start_new_session=True,
            stdout=subprocess.PIPE if relayed else None,
            stderr=subprocess.STDOUT if relayed else None,
        )
        if relayed and process.stdout is not None and config is not None:
            from diagnostics.service.logs import start_relay

            relay = start_relay(process.stdout, handlers, config.log_level, config.log_format)
        for signum in pending:
            process.send_signal(signum)
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if process is not None:
            _end_group(process.pid)
    if relay is not None:
        relay.join(RELAY_DRAIN_S)  # the last lines (why it stopped) are the ones that matter
    for log_handler in handlers:
        log_handler.flush()
    return 128 - code if code < 0 else code


def _end_group(pgid: int) -> None:
    """Workers left behind by a server that died abruptly: its session's group, by id."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return  # nothing left: the normal case
