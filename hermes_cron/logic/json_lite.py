"""`json.loads`, and `json.dumps` as the commands print JSON, for commands that must start fast:
without importing `json`, which brings `re` and `enum` with it (about a quarter of `status`'s
start: README, "Performance"). Where json is loaded already (the daemon, the watchdog, most
commands) they are json's own: its C scanner reads a heartbeat 10x faster than `read` here.

`read` takes the plain JSON the daemon writes (ASCII, as `json.dumps` writes by default; strings
without escapes; numbers, true, false, null; objects and arrays nested at most 32 deep). `write`
writes what `status --json` prints (dicts with text keys, lists, strings that need no escape,
finite numbers, true, false, null). On anything else (an escape, a byte that isn't ASCII, NaN, a
fault of any kind) each hands the same input to `json` itself. So what they return, or raise, is
always what `json` would: they are only faster to start.
"""

from __future__ import annotations

import sys

_SPACE = " \t\n\r"
_NUMBER = frozenset("0123456789+-.eE")
_MAX_DEPTH = 32
_MAX_NUMBER = 40  # characters: a longer number goes to json (whose limits on big ints then apply)


class _Unsure(Exception):
    """Not what this module takes: json decides."""


def loads(raw: bytes | bytearray | str) -> object:
    """`json.loads(raw)`: json's own where it is loaded, else `read`."""
    json = sys.modules.get("json")
    return json.loads(raw) if json is not None else read(raw)


def dumps(value: object) -> str:
    """`json.dumps(value, indent=2, ensure_ascii=False)`: json's own where it is loaded, else `write`."""
    json = sys.modules.get("json")
    return json.dumps(value, indent=2, ensure_ascii=False) if json is not None else write(value)


def read(raw: bytes | bytearray | str) -> object:
    """The value `json.loads(raw)` would return, or its exception."""
    try:
        if isinstance(raw, (bytes, bytearray)):
            text = raw.decode("ascii")
        elif isinstance(raw, str) and raw.isascii():
            text = raw
        else:
            raise _Unsure
        value, end = _value(text, _skip(text, 0), 0)
        if _skip(text, end) != len(text):
            raise _Unsure
        return value
    except (_Unsure, IndexError, UnicodeDecodeError):
        import json

        return json.loads(raw)


def _skip(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in _SPACE:
        i += 1
    return i


def _value(s: str, i: int, depth: int) -> tuple[object, int]:
    c = s[i]
    if c == '"':
        return _string(s, i)
    if c == "{":
        return _object(s, i, depth + 1)
    if c == "[":
        return _array(s, i, depth + 1)
    if c in "-0123456789":
        return _number(s, i)
    for word, value in (("null", None), ("true", True), ("false", False)):
        if s.startswith(word, i):
            return value, i + len(word)
    raise _Unsure


def _string(s: str, i: int) -> tuple[str, int]:
    end = s.find('"', i + 1)
    text = s[i + 1:end]
    # an escape (the quote found may be escaped), or a control character json refuses
    if end < 0 or "\\" in text or not text.isprintable():
        raise _Unsure
    return text, end + 1


def _number(s: str, i: int) -> tuple[int | float, int]:
    """JSON's number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, as json reads it (an int
    without a fraction or an exponent, else float of the text)."""
    end, n = i, len(s)
    while end < n and s[end] in _NUMBER:
        end += 1
    token = s[i:end]
    mantissa, e, exponent = token.replace("E", "e").partition("e")
    whole, dot, fraction = mantissa.removeprefix("-").partition(".")
    exponent = exponent[1:] if exponent[:1] in ("+", "-") else exponent
    # (the text is ASCII, so isdigit() is [0-9]+, and false for "")
    if len(token) > _MAX_NUMBER or not whole.isdigit() or (whole[0] == "0" and whole != "0") \
            or (dot and not fraction.isdigit()) or (e and not exponent.isdigit()):
        raise _Unsure
    return (float(token) if dot or e else int(token)), end


def _object(s: str, i: int, depth: int) -> tuple[dict, int]:
    if depth > _MAX_DEPTH:
        raise _Unsure
    found: dict = {}
    i = _skip(s, i + 1)
    if s[i] == "}":
        return found, i + 1
    while True:
        if s[i] != '"':
            raise _Unsure
        key, i = _string(s, i)
        i = _skip(s, i)
        if s[i] != ":":
            raise _Unsure
        found[key], i = _value(s, _skip(s, i + 1), depth)
        i = _skip(s, i)
        if s[i] == "}":
            return found, i + 1
        if s[i] != ",":
            raise _Unsure
        i = _skip(s, i + 1)


def _array(s: str, i: int, depth: int) -> tuple[list, int]:
    if depth > _MAX_DEPTH:
        raise _Unsure
    found: list = []
    i = _skip(s, i + 1)
    if s[i] == "]":
        return found, i + 1
    while True:
        value, i = _value(s, i, depth)
        found.append(value)
        i = _skip(s, i)
        if s[i] == "]":
            return found, i + 1
        if s[i] != ",":
            raise _Unsure
        i = _skip(s, i + 1)


def write(value: object) -> str:
    """`json.dumps(value, indent=2, ensure_ascii=False)`, or its exception."""
    try:
        out: list[str] = []
        _write(value, out, "\n", 0)
        return "".join(out)
    except _Unsure:
        import json

        return json.dumps(value, indent=2, ensure_ascii=False)


def _write(v: object, out: list[str], newline: str, depth: int) -> None:
    kind = type(v)
    if v is None or kind is bool:
        out.append("null" if v is None else "true" if v else "false")
    elif kind is int:
        out.append(int.__repr__(v))
    elif kind is float:
        if v - v:  # (NaN and the infinities: json writes them its own way)
            raise _Unsure
        out.append(float.__repr__(v))
    elif kind is str:
        out.append(_quoted(v))
    elif depth >= _MAX_DEPTH:  # (json names a circular reference)
        raise _Unsure
    elif kind is dict or kind is list or kind is tuple:
        opening, closing = ("{", "}") if kind is dict else ("[", "]")
        if not v:
            out.append(opening + closing)
            return
        inner = newline + "  "
        out.append(opening)
        for n, item in enumerate(v.items() if kind is dict else v):
            out.append(inner if n == 0 else "," + inner)
            if kind is dict:
                key, item = item
                if type(key) is not str:
                    raise _Unsure
                out.append(_quoted(key) + ": ")
            _write(item, out, inner, depth + 1)
        out.append(newline + closing)
    else:
        raise _Unsure


def _quoted(text: str) -> str:
    # json escapes '"', '\\' and the control characters; anything else is written as it is
    if '"' in text or "\\" in text or not text.isprintable():
        raise _Unsure
    return '"' + text + '"'
