"""One asyncio event loop per process, in a daemon thread, for nats-py (which is asyncio) under the synchronous,
threaded code of swarmd: `run(coroutine, timeout)` from any thread (never from the loop's own) waits for its
result. A forked child gets a loop of its own on first use (the parent's thread does not survive a fork).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_owner_pid = 0


def loop() -> asyncio.AbstractEventLoop:
    """This process's background event loop, started on first use."""
    global _loop, _owner_pid
    with _lock:
        if _loop is None or _owner_pid != os.getpid():
            _loop = asyncio.new_event_loop()
            _owner_pid = os.getpid()
            ready = threading.Event()
            threading.Thread(target=_serve, args=(_loop, ready), name="agentmail-nats", daemon=True).start()
            ready.wait()
        return _loop


def _serve(event_loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(event_loop)
    event_loop.call_soon(ready.set)
    event_loop.run_forever()


def run(coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run `coroutine` on the background loop and return its result (or raise its exception); TimeoutError
    after `timeout` s (the coroutine is then cancelled). RuntimeError if called from the loop's own thread."""
    event_loop = loop()
    if threading.current_thread().name == "agentmail-nats" and _owner_pid == os.getpid():
        coroutine.close()
        raise RuntimeError("agentmail's NATS calls are synchronous: never call them from the loop's thread")
    future = asyncio.run_coroutine_threadsafe(coroutine, event_loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"no answer within {timeout} s") from None
