"""Reading and setting the few keys of the Hermes agent's config.yaml that hermes-cron needs, by
line, so that a change touches only its own line and every other byte (comments, order, quoting)
stays as the user wrote it. Pure code.

Only block-style YAML is understood: a top-level `key: value`, and `section:` followed by
indented `child: value` lines. Anything else (a flow mapping `cron: {provider: x}`, an anchor,
a key given twice) is reported as not understood rather than guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOP = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)[ \t]*:(?:[ \t]+(.*?))?[ \t]*$")
_CHILD = re.compile(r"^([ \t]+)([A-Za-z_][A-Za-z0-9_-]*)[ \t]*:(?:[ \t]+(.*?))?[ \t]*$")


class NotUnderstood(ValueError):
    """The file is not in the simple block style this module edits."""


@dataclass(frozen=True)
class Found:
    """A key's value in a YAML text, and the index of its line (None for both when it is absent)."""

    value: str | None  # None: the key is absent
    line: int | None  # index of its line


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _strip(line: str) -> str:
    return line.rstrip("\r\n")


def scalar(raw: str | None) -> str:
    """A plain or quoted YAML scalar as text (`null`, `~` and nothing are empty)."""
    if raw is None:
        return ""
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = raw.find(quote, 1)
        if end < 0:
            raise NotUnderstood(f"unterminated quoted value {raw!r}")
        inner = raw[1:end]
        return inner.replace("''", "'") if quote == "'" else inner
    raw = re.split(r"[ \t]#", raw, maxsplit=1)[0].strip()
    if raw.startswith("#"):
        return ""
    return "" if raw in ("null", "~", "Null", "NULL") else raw


def _top_keys(lines: list[str]) -> list[tuple[int, str, str | None]]:
    out = []
    for i, line in enumerate(lines):
        m = _TOP.match(_strip(line))
        if m:
            out.append((i, m.group(1), m.group(2)))
    return out


def _section(lines: list[str], name: str) -> tuple[int, int] | None:
    """The line of `name:` and the end (exclusive) of its indented body."""
    tops = [t for t in _top_keys(lines) if t[1] == name]
    if not tops:
        return None
    if len(tops) > 1:
        raise NotUnderstood(f"{name!r} is given {len(tops)} times")
    start, _, inline = tops[0]
    if inline and not inline.lstrip().startswith("#") and scalar(inline) != "":
        raise NotUnderstood(f"{name!r} is written inline ({inline.strip()!r}), not as an indented block")
    end = start + 1
    while end < len(lines):
        body = _strip(lines[end])
        if body and not body[0] in " \t" and not body.lstrip().startswith("#"):
            break
        end += 1
    return start, end


def top(text: str, key: str) -> str:
    """The value of a top-level scalar key ("" when absent or empty)."""
    found = [t for t in _top_keys(_lines(text)) if t[1] == key]
    return scalar(found[-1][2]) if found else ""


def child(text: str, section: str, key: str) -> Found:
    lines = _lines(text)
    span = _section(lines, section)
    if span is None:
        return Found(None, None)
    hits = []
    indent = None
    for i in range(span[0] + 1, span[1]):
        m = _CHILD.match(_strip(lines[i]))
        if not m:
            continue
        if indent is None:
            indent = m.group(1)
        if m.group(1) == indent and m.group(2) == key:
            hits.append((i, m.group(3)))
    if len(hits) > 1:
        raise NotUnderstood(f"{section}.{key} is given {len(hits)} times")
    if not hits:
        return Found(None, None)
    return Found(scalar(hits[0][1]), hits[0][0])


def set_child(text: str, section: str, key: str, value: str) -> str:
    """`text` with `section.key` set to `value` (a plain word), changing or adding one line."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
        raise NotUnderstood(f"{value!r} is not a plain word")
    lines = _lines(text)
    eol = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    span = _section(lines, section)
    if span is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += eol
        lines += [f"{section}:{eol}", f"  {key}: {value}{eol}"]
        return "".join(lines)
    found = child(text, section, key)
    if found.line is not None:
        old = lines[found.line]
        m = _CHILD.match(_strip(old))
        assert m is not None
        rest = m.group(3) or ""
        after = rest.find(rest[0], 1) + 1 if rest[:1] in ("'", '"') else 0
        hit = re.search(r"[ \t]+#", rest[after:]) if not rest.startswith("#") else None
        comment = rest[after + hit.start():] if hit else (f" {rest}" if rest.startswith("#") else "")
        ending = old[len(_strip(old)):]
        lines[found.line] = f"{m.group(1)}{key}: {value}{comment}{ending or eol}"
        return "".join(lines)
    indent = "  "
    for i in range(span[0] + 1, span[1]):
        m = _CHILD.match(_strip(lines[i]))
        if m:
            indent = m.group(1)
            break
    head = lines[span[0]]
    if not head.endswith("\n"):
        lines[span[0]] = head + eol
    lines.insert(span[0] + 1, f"{indent}{key}: {value}{eol}")
    return "".join(lines)
