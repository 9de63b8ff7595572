"""`swarm status --watch`: the status view kept up to date while the supervisor runs.

On a terminal it is a rich Live view drawn again whenever the ledger or a pane changes; elsewhere (a pipe,
a log) it prints the status once and then one plain line per event. It ends on Ctrl-C or once the
supervisor has stopped; it never starts or stops anything itself.
"""

import threading

from rich.console import Console
from rich.live import Live
from rich.text import Text

from swarmd.supervisor.daemon import running_pid, wait_exit
from swarmd.operate import Operator
from swarmd.plans.runner import when_done
from swarmd.workers.spawner import Spawner
from swarmd.cli.view import QUIET, event_line, status_view
from swarmd.watch import watch_file

# Ledger writes and pane deaths redraw the view at once; this only keeps the heartbeat ages moving.
AGES_REFRESH = 5.0


def watch_status(operator: Operator, console: Console) -> None:
    """Show the swarm's status until the supervisor stops (returns) or Ctrl-C (KeyboardInterrupt)."""
    pid = running_pid(operator.home)
    if pid is None:
        console.print(status_view(operator.status()))
        return
    gone = when_done(lambda: wait_exit(pid, None))
    if console.is_terminal:
        _live(operator, console, gone)
    else:
        _lines(operator, console, gone)
    console.print(Text(f"supervisor stopped (pid {pid})"))


def _live(operator: Operator, console: Console, gone: threading.Event) -> None:
    wake = threading.Event()
    threading.Thread(target=lambda: (gone.wait(), wake.set()), daemon=True).start()
    pane_died = Spawner(operator.home, operator.config, operator.tmux).pane_died_file
    watches = [watch_file(operator.ledger.path, wake.set), watch_file(pane_died, wake.set)]
    try:
        with Live(status_view(operator.status()), console=console, auto_refresh=False) as live:
            while not gone.is_set():
                wake.wait(AGES_REFRESH)
                wake.clear()
                live.update(status_view(operator.status()), refresh=True)
    finally:
        for watch in watches:
            watch.stop()


def _lines(operator: Operator, console: Console, gone: threading.Event) -> None:
    since = operator.ledger.last_seq()
    console.print(status_view(operator.status()))
    for event in operator.ledger.follow(since_seq=since, stop=gone):
        if event.type not in QUIET:
            console.print(event_line(event), soft_wrap=True)
