"""Stand-in `ol` and `bd` executables for tests: real programs on PATH that record every call and answer in
the documented formats, so the planning-tool integrations are tested without the real tools installed.

Each stand-in appends its argv as one JSON line to `calls.jsonl` in its directory and answers from
`answers.json` there:
- `ol hero ratchet BEAD --quest Q`: pops the next {"exit": N, "stderr": "..."} from answers["ratchet"][BEAD]
  (exit 0 when none is left), prints the stderr, exits N.
- `bd ready --json`: the beads of answers["beads"] whose status is open, as a JSON list of issues.
- `bd show ID --json`: a JSON list with that bead (exit 1 if unknown).
- `bd update ID --status S` / `bd close ID`: change the bead's status in answers.json.
"""

import json
import os
import sys
from pathlib import Path
from typing import Any

_PROGRAM = r'''
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.path.join(here, "calls.jsonl"), "a") as log:
    log.write(json.dumps([name, *args]) + "\n")
path = os.path.join(here, "answers.json")
with open(path) as f:
    answers = json.load(f)
def save():
    with open(path + ".tmp", "w") as f:
        json.dump(answers, f)
    os.replace(path + ".tmp", path)
def bead(bead_id):
    found = [b for b in answers.get("beads", []) if b["id"] == bead_id]
    if not found:
        sys.stderr.write(f"Error: no issue found matching {bead_id!r}\n")
        sys.exit(1)
    return found[0]
if name == "ol" and args[:2] == ["hero", "ratchet"] and len(args) == 5 and args[3] == "--quest":
    queue = answers.setdefault("ratchet", {}).get(args[2], [])
    answer = queue.pop(0) if queue else {"exit": 0, "stderr": ""}
    save()
    sys.stderr.write(answer["stderr"])
    sys.exit(answer["exit"])
if name == "bd" and args == ["ready", "--json"]:
    print(json.dumps([b for b in answers.get("beads", []) if b["status"] == "open"]))
elif name == "bd" and len(args) == 3 and args[0] == "show" and args[2] == "--json":
    print(json.dumps([bead(args[1])]))
elif name == "bd" and len(args) == 4 and args[0] == "update" and args[2] == "--status":
    bead(args[1])["status"] = args[3]
    save()
elif name == "bd" and len(args) == 2 and args[0] == "close":
    bead(args[1])["status"] = "closed"
    save()
else:
    sys.stderr.write(f"stand-in {name}: unexpected arguments {args}\n")
    sys.exit(2)
'''


def issue(bead_id: str, title: str, description: str, priority: int = 2, status: str = "open") -> dict[str, Any]:
    """A beads issue as `bd ready --json` prints it (the fields bd prints; a few of them)."""
    return {"id": bead_id, "title": title, "description": description, "status": status, "priority": priority,
            "issue_type": "task", "created_at": "2026-01-19T22:12:48Z", "updated_at": "2026-01-19T22:12:48Z",
            "labels": [], "dependency_count": 0, "dependent_count": 0}


class StandIns:
    """A directory of stand-in programs; `env()` puts it first on PATH (for `swarm` and everything it starts)."""

    def __init__(self, directory: Path, names: tuple[str, ...] = ("ol", "bd"), **answers: Any) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        for name in names:
            exe = directory / name
            exe.write_text(f"#!{sys.executable}\n{_PROGRAM}")
            exe.chmod(0o755)
        (directory / "answers.json").write_text(json.dumps(answers))
        (directory / "calls.jsonl").touch()

    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.dir}{os.pathsep}{os.environ.get('PATH', '')}"}

    def calls(self, name: str | None = None) -> list[list[str]]:
        """Every call so far, [program, *args], oldest first (of one program if `name` is given)."""
        lines = (self.dir / "calls.jsonl").read_text().splitlines()
        return [c for c in map(json.loads, lines) if name is None or c[0] == name]

    def bead_status(self, bead_id: str) -> str:
        answers = json.loads((self.dir / "answers.json").read_text())
        return next(b["status"] for b in answers["beads"] if b["id"] == bead_id)


def path_without(*names: str) -> str:
    """$PATH with every directory that holds one of `names` left out."""
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(d for d in dirs if d and not any((Path(d) / n).exists() for n in names))
