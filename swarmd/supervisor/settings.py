"""Run-time overrides of swarm.toml that a running supervisor picks up (max_workers from `swarm run`), and
whether dispatch is paused (`swarm pause`).

The overrides last as long as that supervisor: a new one starts from swarm.toml (and its own --max-workers) again.
"""

import json
import os
from typing import Any

from swarmd.home import SwarmHome


def _path(home: SwarmHome) -> os.PathLike[str]:
    return home.run_dir / "settings.json"


def read_settings(home: SwarmHome) -> dict[str, Any]:
    try:
        with open(_path(home)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_settings(home: SwarmHome, **values: Any) -> None:
    """Merge `values` into the overrides, atomically."""
    data = {**read_settings(home), **values}
    tmp = home.run_dir / f"settings.json.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, _path(home))


def clear_settings(home: SwarmHome) -> None:
    try:
        os.unlink(_path(home))
    except FileNotFoundError:
        pass


# Paused dispatch is a file of its own, outside the overrides above: a pause outlasts the supervisor it was
# made under (an operator who paused a swarm must not find it dispatching again after a restart).
def _paused_path(home: SwarmHome) -> os.PathLike[str]:
    return home.run_dir / "dispatch-paused"


def dispatch_paused(home: SwarmHome) -> bool:
    """Whether dispatch is paused (`swarm pause`): one stat, cheap enough for every supervisor step."""
    return os.path.lexists(_paused_path(home))


def pause_dispatch(home: SwarmHome, by: str) -> bool:
    """Pause dispatch, recording who did it; False if it was paused already."""
    try:
        fd = os.open(_paused_path(home), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(by + "\n")
    return True


def resume_dispatch(home: SwarmHome) -> bool:
    """Let dispatch go on; False if it was not paused."""
    try:
        os.unlink(_paused_path(home))
    except FileNotFoundError:
        return False
    return True
