"""`swarm plan check`: everything `swarm run` would refuse about a plan, found without starting anything."""

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from swarmd.config import Config
from swarmd.plans.plan import PlanError, load_plan
from swarmd.plans.runner import profile_problems


@dataclass
class PlanCheck:
    """The plan file, its task count (0 when it could not be read) and every problem found, one line each."""

    plan: str
    tasks: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the plan would load: no problems."""
        return not self.problems


def check_plan(path: Path, config: Config, known: Collection[str] = ()) -> PlanCheck:
    """Load the plan as `swarm run` would (with `known` ids already on the board) and check its profiles and
    their programs against `config`. Never raises for a bad plan: the reason is in `problems`."""
    result = PlanCheck(plan=str(path))
    try:
        plan = load_plan(path, known=known)
    except PlanError as exc:
        result.problems.append(str(exc))
        return result
    result.tasks = len(plan.tasks)
    result.problems += profile_problems(plan, config)
    return result
