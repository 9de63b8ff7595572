"""A standing worker: started by a coordinator agent before it has a task (`swarm_spawn`), it heartbeats
while it waits for its TASK_ASSIGN (`swarm_task`), then becomes its profile's worker for that task by exec:
the same pane, the same pid, the same environment plus SWARM_TASK, SWARM_PROMPT and SWARM_ATTEMPT (and, for an
agent CLI, the config directory its adapter writes for the task, as the spawner does).

The TASK_ASSIGN is left unread: the profile's worker (`python -m swarmd.worker`) reads it as it would the
supervisor's. Run as `python -m swarmd.workers.standby` with SWARM_HOME, SWARM_AGENT and SWARM_PROFILE set.
"""

import os
import sys
import uuid
from pathlib import Path

from agentmail import PostOffice
from protocol.messages import MessageType
from protocol.names import validate_agent_name
from swarmd.config import load_config
from swarmd.errors import ConfigError
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.workers.spawner import Spawner, render_command
from swarmd.workers.tmux import TmuxServer
from swarmd.workers.wrapper import Heartbeat


def main() -> int:
    """Wait for the TASK_ASSIGN, then exec the profile's command; 2 with one line on stderr on bad setup."""
    try:
        home = SwarmHome.at(os.environ["SWARM_HOME"])
        agent = validate_agent_name(os.environ["SWARM_AGENT"])
        config = load_config(home.config_file)
        profile = config.profiles.get(os.environ.get("SWARM_PROFILE") or config.default_profile)
        if profile is None:
            raise ConfigError(f"unknown worker profile {os.environ.get('SWARM_PROFILE')!r}")
    except (KeyError, ValueError, ConfigError) as exc:
        print(f"swarm standby: error: {exc}", file=sys.stderr)
        return 2
    beat = Heartbeat(home, agent, config.heartbeat_interval)
    beat.start()
    print(f"{agent}: waiting for a task", flush=True)
    delivered = PostOffice(home.root, durable=config.durable).mailbox(agent).wait(
        types={MessageType.TASK_ASSIGN}, claim=False)
    beat.stopped.set()
    body = delivered.message.body
    prompt = body.prompt_file or str(home.prompts_dir / f"{agent}.md")
    env = {**os.environ, **profile.env, "SWARM_TASK": body.task, "SWARM_PROMPT": prompt,
           "SWARM_ATTEMPT": str(body.attempt)}
    session_id = str(uuid.uuid4())
    if profile.agent is not None:  # the agent CLI's own config, as the spawner writes it for the supervisor's
        spawner = Spawner(home, config, TmuxServer(home.tmux_socket))
        task = Ledger(home, durable=config.durable).task(body.task)
        env.update(spawner.prepare_agent(profile, task, agent, Path.cwd(), env, session_id))
        env = spawner.with_skills(agent, env)
    command = render_command(profile.command, {"prompt_file": prompt, "task_id": body.task, "agent": agent,
                                               "home": str(home.root), "python": sys.executable,
                                               "session_id": session_id})
    print(f"{agent}: starting task {body.task}", flush=True)
    os.execvpe("sh", ["sh", "-c", command], env)
    return 127  # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main())
