"""The real Claude Code TUI in a tmux pane, for the delivery and pane-state tests: its config written before
launch (no onboarding, trust or API-key dialog), its turns read back from its own transcript.

Facts checked against claude-code 2.1.332: an interactive start shows no dialog when the config file
(`$CLAUDE_CONFIG_DIR/.claude.json`) has `hasCompletedOnboarding`, the project's `hasTrustDialogAccepted`, and
the API key's last 20 characters in `customApiKeyResponses.approved`. Each submitted prompt is one `user`
entry of the session's transcript (`projects/<project>/<session>.jsonl`); a pasted prompt is wrapped there
in `<pasted_content>` tags.
"""

import json
from pathlib import Path

from agentclis import agent_env
from swarmd.workers.delivery import composer
from swarmd.workers.tmux import TmuxServer
from swarmkit import wait_until


def preconfigure(config_dir: Path, project: Path, api_key: str, *, trust: bool = True) -> None:
    """Write the interactive start's config: onboarding done, `project` trusted (unless `trust` is false),
    `api_key` approved."""
    config = {"hasCompletedOnboarding": True,
              "customApiKeyResponses": {"approved": [api_key[-20:]], "rejected": []},
              "projects": {str(project): {"hasTrustDialogAccepted": trust}}}
    (config_dir / ".claude.json").write_text(json.dumps(config))


def start_claude(tmux: TmuxServer, session: str, claude: Path, root: Path, model_url: str, *,
                 trust: bool = True, args: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """Start the claude TUI in a new session with its own config under `root`; return (config dir, project)."""
    project = root / "project"
    project.mkdir(parents=True, exist_ok=True)
    env = agent_env(root, model_url)
    config_dir = Path(env["CLAUDE_CONFIG_DIR"])
    preconfigure(config_dir, project, env["ANTHROPIC_API_KEY"], trust=trust)
    tmux.spawn(session, [str(claude), *args], env=env, cwd=project, width=120, height=40)
    return config_dir, project


def wait_for_composer(tmux: TmuxServer, session: str) -> None:
    wait_until(lambda: composer(tmux.screen(session)) is not None, 60, f"claude's composer in {session}")


def user_turns(config_dir: Path) -> list[str]:
    """The text of each user turn claude recorded, in order (tool results left out)."""
    turns = []
    for transcript in sorted((config_dir / "projects").glob("*/*.jsonl")):
        for line in transcript.read_text().splitlines():
            entry = json.loads(line)
            content = entry.get("message", {}).get("content") if entry.get("type") == "user" else None
            if isinstance(content, str):
                turns.append(content)
            elif isinstance(content, list):
                texts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
                if texts:
                    turns.append("".join(texts))
    return turns
