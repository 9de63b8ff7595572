"""Which shell commands a worker's agent may run without asking anyone: the swarm's reporting commands and the
task's own checks. Pure functions on strings (no pydantic): the agent's PreToolUse hook calls them per command.

Claude Code's own allow rules refuse any command holding a variable ("can't be checked before it runs"), so
`agentmail send --from "$SWARM_AGENT" ...` needs this decision from the hook (`permissionDecision: allow`).
"""

import re
import shlex

# The reporting commands of the swarm's protocol (prompt.py's "How to report"), as leading words.
REPORTING = (("agentmail", "send"), ("agentmail", "read"), ("agentmail", "list"), ("agentmail", "ack"))
# Variables a reporting command may use: the worker's own, which swarmd sets.
_VARIABLE = re.compile(r"\$(\{SWARM_[A-Z_]+\}|SWARM_[A-Z_]+)")
_OPERATORS = set(";&|<>()\n")


def simple_words(command: str) -> list[str] | None:
    """The words of `command` if it is one simple command: no operators (`;` `&&` `|` redirections), no command
    substitution, no variables other than $SWARM_*; else None. Quoted text may hold anything but `$(` and `` ` ``.
    """
    if "`" in command or "$(" in command or "$" in _VARIABLE.sub("", command):
        return None
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:  # an unclosed quote
        return None
    if not words or any(word and set(word) <= _OPERATORS for word in words):
        return None
    return words


def allowed(command: str, *, prefixes: tuple[tuple[str, ...], ...] = REPORTING,
            exact: tuple[str, ...] = ()) -> bool:
    """Whether the policy lets `command` run unasked: it is one of `exact` (the task's check commands, as the
    supervisor will run them), or one simple command whose first words are one of `prefixes`."""
    if command.strip() in exact:
        return True
    words = simple_words(command)
    if words is None:
        return False
    return any(tuple(words[:len(prefix)]) == prefix for prefix in prefixes)
