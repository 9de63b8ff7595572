"""Text from outside (task titles, summaries, mail, file names) made safe to print."""

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def inert(text: object) -> str:
    """`text` with every control character (ESC, CR, BEL, the C1 range...) written out as an escape such as
    `\\x1b`: shown, never sent, so data can neither move the cursor, recolour nor retitle a terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))
