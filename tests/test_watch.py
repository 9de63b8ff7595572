"""The file watch that wakes the supervisor and `feed --follow`: writes wake it, reads never do."""

import threading
from pathlib import Path

from swarmd.watch import watch_file


def test_reads_do_not_wake_but_writes_do(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    log.write_text("first\n")
    calls: list[int] = []
    woke = threading.Event()

    def poke() -> None:
        calls.append(1)
        woke.set()

    observer = watch_file(log, poke)
    try:
        for _ in range(50):
            log.read_text()  # the supervisor reads the ledger on every step
        (tmp_path / "other.txt").write_text("not the watched file")
        with log.open("a") as f:
            f.write("second\n")
        assert woke.wait(10), "an append must wake the watcher"
        # inotify keeps order: the 50 reads came before the write, so any wake-up they caused has been counted.
        # The write may wake it three times: its modify and close events, and the periodic rescan that sees it.
        assert len(calls) <= 3, f"{len(calls)} wake-ups for 50 reads and one write"
    finally:
        observer.stop()
