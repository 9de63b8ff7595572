"""Why a ready task is not placed: the supervisor's note on it when no place (no worker host, nor this machine)
offers every label it asks for.

The note is a `blocker` note by the supervisor; an `update` note of its own says when a place offers the labels
again. So a task waits on its labels while it is open and the supervisor's last note on it is a blocker.
Models-free (the lean `swarm status` reads it too): notes are (author, kind, text) triples.
"""

from collections.abc import Iterable

SUPERVISOR = "supervisor"
WAITING = "blocker"  # the kind of the supervisor's note that a task waits on its labels
OFFERED = "update"  # the kind of its note that a place offers them now


def last_said(notes: Iterable[tuple[str, str, str]]) -> tuple[str, str] | None:
    """(kind, text) of the supervisor's last note among `notes` (oldest first), None if it wrote none."""
    said = None
    for author, kind, text in notes:
        if author == SUPERVISOR:
            said = (kind, text)
    return said


def waiting_on(status: str, notes: Iterable[tuple[str, str, str]]) -> str | None:
    """What an open task waits on (the text of the supervisor's note), None if it waits on nothing it said."""
    if status != "open":
        return None
    said = last_said(notes)
    return said[1] if said is not None and said[0] == WAITING else None


def unoffered(labels: Iterable[str], offers: dict[str, list[str]], local: str = "") -> str | None:
    """The note for a task asking for `labels` when no place in `offers` (place -> its labels; `local`, this
    machine) offers them all; None when one does."""
    wanted = sorted(set(labels))
    if not wanted or any(set(wanted) <= set(have) for have in offers.values()):
        return None
    anywhere = set().union(*offers.values()) if offers else set()
    missing = [label for label in wanted if label not in anywhere]
    nor = " nor this machine" if local in offers else ""
    if missing:
        return (f"waiting: no host{nor} offers the label{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"(a host that joins with `--labels {','.join(wanted)}` takes it)")
    return (f"waiting: no one host{nor} offers all of its labels {', '.join(wanted)} (a host that joins with "
            f"`--labels {','.join(wanted)}` takes it)")
