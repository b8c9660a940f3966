"""The registry in the running service: swap the active engine, run the shadow model.

`ModelSwitch` polls `registry.json`'s mtime (`package/registry.py`); when the active or shadow
version changed (the CLI or the admin page, in any process), it loads and warms the new
screener first and then swaps a reference, so a study in hand finishes on the engine it started
with (`ClaimScreening` takes one screener per claim) and no request sees a missing model.

The shadow model screens every study the active one recorded, after it, in a thread of its own:
it never delays or fails the active result. Its result goes to a JSON file of its own under
`<storage>/models/shadow/<name>-<version>/<study>.json` (tagged shadow, with its model), never
into the store's results, the outbox, FHIR or the worklist; its failures are recorded there too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from diagnostics.durable import write_file
from diagnostics.errors import DiagnosticsError
from diagnostics.package.registry import ModelRegistry, RegistryState
from diagnostics.screening import Screener, ScreeningOutcome
from diagnostics.store.records import Claim

log = logging.getLogger(__name__)

POLL_S = 1.0
"""How often the registry's state file is looked at: a change is live within a few seconds."""
SHADOW_QUEUE = 256
"""Studies waiting for the shadow model at most; beyond it one is skipped (and logged)."""

Load = Callable[[Path], Screener]
"""Loads and warms a screener from an installed package folder."""


class ShadowRunner:
    """A thread that screens studies with the shadow model and keeps its results apart."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.current: tuple[Screener, str] | None = None
        """The shadow screener and its `<name>-<version>`; None: no shadow."""
        self._queue: queue.Queue[tuple[Claim, int, str] | None] = queue.Queue(SHADOW_QUEUE)
        self._thread: threading.Thread | None = None
        self.skipped = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shadow-model", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if self._thread is not None:
            self._thread.join(3.0)

    def submit(
        self, claim: Claim, version: int, _outcome: ScreeningOutcome, active: Screener
    ) -> None:
        """After the active result `version` is recorded (`ClaimScreening.on_recorded`)."""
        if self.current is None:
            return
        active_ref = active.model_ref
        try:
            self._queue.put_nowait((claim, version, f"{active_ref.name} {active_ref.version}"))
        except queue.Full:
            self.skipped += 1
            log.warning("shadow model: study %s skipped (queue full)", claim.study_instance_uid)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._screen(*item)
            except Exception:  # the thread's top level: the next study still gets its turn
                log.exception("shadow model: study %s not recorded", item[0].study_instance_uid)

    def _screen(self, claim: Claim, version: int, active: str) -> None:
        current = self.current
        if current is None:
            return
        screener, key = current
        study = claim.study_instance_uid
        started = time.perf_counter()
        record: dict[str, object] = {
            "tag": "shadow",
            "model": key,
            "study_instance_uid": study,
            "active_result_version": version,
            "active_model": active,
        }
        try:
            batch = screener.screen(list(claim.paths))
            found = [o for o in batch.outcomes if o.result.study_instance_uid == study]
            if not found:
                raise DiagnosticsError("the shadow model read no study from the stored files")
            record["result"] = json.loads(found[0].result.model_dump_json())
        except Exception as exc:  # recorded, never raised: the active result stands
            log.exception("shadow model %s: study %s failed", key, study)
            record["error"] = f"{type(exc).__name__}: the service log has the details"
        record["seconds"] = round(time.perf_counter() - started, 3)
        record["at"] = time.time()
        folder = self.registry.shadow_results(key)
        folder.mkdir(parents=True, exist_ok=True)
        write_file(folder / f"{study}.json", json.dumps(record).encode())


class ModelSwitch:
    """The active and shadow screeners of one process, following the registry."""

    def __init__(
        self,
        registry: ModelRegistry,
        load: Load,
        on_active: Callable[[Screener], None],
    ) -> None:
        self.registry = registry
        self._load = load
        self._on_active = on_active
        self.shadow = ShadowRunner(registry)
        self.active_key: str | None = None
        self._seen = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, model: Path, actor: str) -> Screener:
        """Adopt `--model` (`ModelRegistry.adopt`), load the active and shadow models; return
        the active screener. Raises `ModelPackageError` when the active one cannot load."""
        self._seen = self.registry.mtime()
        state = self.registry.adopt(model, actor)
        self._seen = self.registry.mtime()
        assert state.active is not None
        screener = self._load(self.registry.path_of(state.active))
        self.active_key = state.active
        self._follow_shadow(state)
        self.shadow.start()
        self._thread = threading.Thread(target=self._poll, name="model-registry", daemon=True)
        self._thread.start()
        return screener

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(3.0)
        self.shadow.stop()

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.check()
            except Exception:  # the thread's top level: the next change is still followed
                log.exception("model registry: change not applied")

    def check(self) -> None:
        """Apply a changed registry: load what is new, then swap."""
        mtime = self.registry.mtime()
        if mtime == self._seen:
            return
        self._seen = mtime
        state = self.registry.state()
        if state.active is not None and state.active != self.active_key:
            try:
                screener = self._load(self.registry.path_of(state.active))
            except DiagnosticsError as exc:
                log.error(
                    "model %s not activated, still serving %s: %s",
                    state.active,
                    self.active_key,
                    exc,
                )
            else:
                self._on_active(screener)
                log.info("model %s active (was %s)", state.active, self.active_key)
                self.active_key = state.active
        self._follow_shadow(state)

    def _follow_shadow(self, state: RegistryState) -> None:
        current = self.shadow.current
        if state.shadow == (current[1] if current else None):
            return
        if state.shadow is None:
            self.shadow.current = None
            log.info("shadow model off")
            return
        try:
            screener = self._load(self.registry.path_of(state.shadow))
        except DiagnosticsError as exc:
            log.error("shadow model %s not loaded: %s", state.shadow, exc)
            return
        self.shadow.current = (screener, state.shadow)
        log.info("shadow model %s runs on every study", state.shadow)
