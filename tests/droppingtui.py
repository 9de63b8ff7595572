"""A minimal composer TUI for delivery tests: it draws `❯ <text>` inside rules, reads bracketed pastes and
typed keys, and drops the first `--drop` Enters (as an agent busy redrawing does); each Enter it takes appends
the composer's text as one JSON line to the output file. With `--blind` it never shows what it reads (a pane
that swallows a paste): each paste it reads is a JSON line `{"pasted": text}` in the output file instead.

    python droppingtui.py OUT [--drop N] [--blind]
"""

import argparse
import codecs
import json
import os
import sys
import termios
import tty

RULE = "─" * 40
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"


def draw(text: str) -> None:
    lines = text.split("\n") or [""]
    body = "\n".join(["❯\u00a0" + lines[0]] + ["  " + line for line in lines[1:]])
    sys.stdout.write("\x1b[2J\x1b[H" + RULE + "\r\n" + body.replace("\n", "\r\n") + "\r\n" + RULE + "\r\n")
    sys.stdout.flush()


def record(out: str, entry: object) -> None:
    with open(out, "a") as sink:
        sink.write(json.dumps(entry) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--drop", type=int, default=0)
    parser.add_argument("--blind", action="store_true")
    args = parser.parse_args()
    out, drop = args.out, args.drop
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    sys.stdout.write("\x1b[?2004h")  # ask for bracketed paste
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text, pending = "", ""
    try:
        draw(text)
        while chunk := os.read(fd, 65536):
            pending += decoder.decode(chunk)
            while pending:
                if pending.startswith(PASTE_START):
                    end = pending.find(PASTE_END)
                    if end < 0:
                        break
                    pasted = pending[len(PASTE_START):end].replace("\r", "\n")
                    pending = pending[end + len(PASTE_END):]
                    if args.blind:
                        record(out, {"pasted": pasted})
                        continue
                    text += pasted
                elif PASTE_START.startswith(pending):
                    break  # the rest of the marker is still on its way
                elif pending[0] == "\r":
                    pending = pending[1:]
                    if drop > 0:
                        drop -= 1
                        continue
                    record(out, text)
                    text = ""
                else:
                    text += "" if args.blind else pending[0]
                    pending = pending[1:]
            draw(text)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


if __name__ == "__main__":
    main()
