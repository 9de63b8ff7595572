"""Run-time overrides of swarm.toml that a running supervisor picks up (today: max_workers from `swarm run`).

They last as long as that supervisor: a new one starts from swarm.toml (and its own --max-workers) again.
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
