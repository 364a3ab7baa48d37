"""logic/json_lite.py: whatever the input, the same value or the same exception as json.loads
(`read`) and json.dumps (`write`); the JSON the daemon writes read without json. Checked against
json itself on the files the daemon writes, on cases at the edges of JSON's grammar, and on
thousands of random documents and their mutations."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest

from hermes_cron.logic import json_lite

_real_loads = json.loads


def outcome(load, raw):
    """What a loader makes of `raw`, comparable across loaders: the value with every type spelled
    out (1, 1.0 and True differ; NaN equals NaN), or the exception's type and message."""
    try:
        value = load(raw)
    except Exception as e:  # noqa: BLE001 - the exception is the outcome
        return ("raised", type(e).__name__, str(e))
    return ("value", typed(value))


def typed(v):
    if isinstance(v, dict):
        return ("dict", [(typed(k), typed(x)) for k, x in v.items()])
    if isinstance(v, list):
        return ("list", [typed(x) for x in v])
    if isinstance(v, float):
        return ("float", "nan" if math.isnan(v) else repr(v))
    return (type(v).__name__, v)


@pytest.fixture
def fallbacks(monkeypatch):
    """The inputs json_lite handed to json.loads."""
    handed: list = []
    real = json.loads

    def counting(raw, *args, **kwargs):
        handed.append(raw)
        return real(raw, *args, **kwargs)

    monkeypatch.setattr(json, "loads", counting)
    return handed


# What the daemon writes: read without json
OURS = [
    b'{"boot_id": "a1c4e701-8639-4e60-9ca4-2d415f95da15", "claims": 0, "consecutive_failures": 0, '
    b'"heartbeat_every": 5, "histograms": {"fire_latency_seconds": {"bounds": [0.0005, 0.001, 5e-05, 1.0], '
    b'"count": 0, "counts": [0, 0, 0], "sum": 0.0}}, "home": "/tmp/h", "interval_s": 300.0, "last_error": null, '
    b'"last_ok_tick": 1795976191.124261, "lock_wait": null, "next_due": {"at": "2026-11-30T00:00:00.000Z", '
    b'"job": "a"}, "pid": 1887, "running": 0, "ok": true, "no": false, "version": "0.1.0"}\n',
    b'{"pid": 1887, "pid_start": 8613, "argv": ["/usr/bin/python3", "-m", "hermes_cron", "run"], "e": -1.5E+300}',
    b'{}', b'[]', b'  [ ]  ', b'{ "a" : [ 1 , { } , [ [ ] ] ] }', b'0', b'-0', b'-0.0', b'12', b'"x"',
    b'null', b'true', b'false', b'1e400', b'-1e400', b'1E-7', b'123456789012345678901234567890',
    b'{"a": 1, "a": 2}', b'\t\r\n{"k": "v"}\n\n', "{\"s\": \"str, not bytes\"}",
]

# At the edges: JSON json.loads takes that this reader leaves to it, and what neither takes
EDGES = [
    b'', b' ', b'{', b'}', b'[', b']', b'{"a"}', b'{"a":}', b'{"a":1,}', b'[1,]', b'[,1]', b'{,}', b'{"a" 1}',
    b'{1: 2}', b"{'a': 1}", b'[1 2]', b'01', b'-01', b'00', b'1.', b'.5', b'-.5', b'-', b'--1', b'+1', b'1e',
    b'1e+', b'1E-', b'1.2.3', b'1e5e5', b'1e5.5', b'0x10', b'1_000', b'Infinity', b'-Infinity', b'NaN',
    b'[NaN]', b'nul', b'nulll', b'truefalse', b'True', b'None', b'"abc', b'"a\\"b"', b'"\\u00e9"',
    b'"\\ud83d\\ude00"', b'"\\ud800"', b'"a\\nb"', b'"tab\there"', b'"nul\x00"', b'"del\x7f"', b'"\xc3\xa9"',
    b'\xef\xbb\xbf{}', b'{}\x00', b'\x00{}', '{}'.encode('utf-16'), '"\u00e9"'.encode(), b'1 2', b'{} {}',
    b'{"a": 1} x', b'[' * 40 + b']' * 40, b'[' * 33 + b']' * 33, b'[' * 32 + b']' * 32, b'[' * 5000,
    b'{"a":' * 3000, b'9' * 5000, b'1' + b'0' * 45, b'1.' + b'5' * 60, "caf\u00e9", "{\"\u00e9\": 1}",
    b'\x0c{}', b'\x0b1', b'1\x0c', bytearray(b'{"b": [1]}'),
]


@pytest.mark.parametrize("raw", OURS, ids=range(len(OURS)))
def test_the_daemons_json_is_read_without_json(raw, fallbacks):
    assert outcome(json_lite.read, raw) == outcome(_real_loads, raw)
    assert fallbacks == []


@pytest.mark.parametrize("raw", EDGES, ids=range(len(EDGES)))
def test_edges_come_out_as_json_says(raw):
    assert outcome(json_lite.read, raw) == outcome(json.loads, raw)


def test_not_bytes_nor_text_is_jsons_error():
    for raw in (None, 5, ["{}"]):
        assert outcome(json_lite.read, raw) == outcome(json.loads, raw)


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(10 if depth < 4 else 7)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 7, 10 ** rng.randrange(30), -(2 ** 63), rng.randrange(-10 ** 6, 10 ** 6)])
    if kind in (2, 3):
        return rng.choice([0.0, -0.0, 0.1, 5e-05, 1e22, 1.7976931348623157e308, 2.2e-308, rng.uniform(-1e6, 1e6),
                           math.inf, -math.inf, math.nan])
    if kind in (4, 5, 6):
        return _random_string(rng)
    if kind in (7, 8):
        return {_random_string(rng) if rng.random() < 0.9 else "k": _random_value(rng, depth + 1)
                for _ in range(rng.randrange(5))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]


def _random_string(rng: random.Random) -> str:
    alphabet = "abc XYZ/._-:019" + rng.choice(["", '"\\', "\u00e9\u20ac", "\n\t\x01\x7f", "\ud800", "\U0001f600"])
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))


def _random_text(rng: random.Random) -> str:
    value = _random_value(rng)
    return json.dumps(value, ensure_ascii=rng.random() < 0.7, indent=rng.choice([None, None, 0, 2, "\t"]),
                      separators=rng.choice([None, (",", ":"), (" , ", " : ")]), sort_keys=rng.random() < 0.5)


def _mutate(rng: random.Random, raw: bytes) -> bytes:
    b = bytearray(raw)
    for _ in range(rng.randrange(1, 4)):
        at = rng.randrange(len(b) + 1)
        op = rng.randrange(3)
        piece = bytes([rng.choice(b'{}[],:"\\ .-+eE0123456789tfn\x00\xff\x7f\t')])
        if op == 0 and at < len(b):
            del b[at]
        elif op == 1:
            b[at:at] = piece
        elif at < len(b):
            b[at:at + 1] = piece
    return bytes(b)


def test_random_documents_and_their_mutations_come_out_as_json_says(fallbacks):
    rng = random.Random(17)
    taken = 0
    for _ in range(3000):
        text = _random_text(rng)
        data = text.encode("utf-8", "surrogatepass")  # (json.loads decodes bytes so)
        for raw in (data, text, _mutate(rng, data), _mutate(rng, data)):
            before = len(fallbacks)
            assert outcome(json_lite.read, raw) == outcome(_real_loads, raw), raw
            taken += len(fallbacks) == before
    # the reader did the work itself for a good part of them (the rest went to json.loads)
    assert taken > 3000


def _in_a_fresh_process(statement: str) -> tuple[str, str]:
    """What `statement` prints in a new interpreter, and which of json, re and enum it loaded.
    (An editable install's import hook loads re at start: then only json is checked.)"""
    code = ("import sys\n"
            "before = set(sys.modules)\n"
            "from hermes_cron.logic.json_lite import dumps, loads\n"
            f"{statement}\n"
            "print(sorted(m for m in ('json', 're', 'enum') if m in sys.modules and m not in before))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    printed, loaded = out.stdout.rstrip("\n").rsplit("\n", 1)
    return printed, loaded


def test_where_json_isnt_loaded_the_daemons_files_are_read_without_it():
    values, loaded = _in_a_fresh_process(f"print(repr([loads(raw) for raw in {OURS[:2]!r}]))")
    assert loaded == "[]" and values == repr([json.loads(raw) for raw in OURS[:2]])


def test_where_json_is_loaded_its_own_does_the_work(fallbacks):
    """(json's C scanner is faster: the daemon reads every run's result file this way)"""
    assert json_lite.loads(OURS[1]) == _real_loads(OURS[1]) and fallbacks == [OURS[1]]
    value = {"a": [1, 2.5, None], "b": "caf\u00e9"}
    assert json_lite.dumps(value) == _real_dumps(value)


def _real_dumps(value):
    return json.dumps(value, indent=2, ensure_ascii=False)


def _odd_value(rng: random.Random):
    """What json.dumps writes its own way, or refuses: dumps must hand each over."""
    return rng.choice([{1: "int key"}, {None: 1, True: 2, 2.5: 3}, ("a", "tuple"), {"set": {1}}, b"bytes",
                       "quote\"d", "back\\slash", "new\nline", "\x7f", "\u2028", "\ud800", "caf\u00e9 \U0001f600",
                       float("nan"), float("inf"), -float("inf"), True, 10 ** 30, -0.0, 1e-7, object(),
                       _deep(40), _deep(31), _deep(32), _deep(33), [], {}, [[]], {"": {}}])


def _deep(n: int):
    value: object = "bottom"
    for i in range(n):
        value = [value] if i % 2 else {"k": value}
    return value


class _Str(str):
    pass


def test_dumps_writes_as_json_dumps_does(fallbacks):
    rng = random.Random(5)
    written = 0
    for _ in range(3000):
        value = _random_value(rng)
        if rng.random() < 0.3:
            value = {"odd": _odd_value(rng), "value": value}
        before = len(fallbacks)
        assert outcome(json_lite.write, value) == outcome(_real_dumps, value), value
        written += len(fallbacks) == before
    assert written > 1000  # (and the rest went to json.dumps)


def test_dumps_hands_json_what_it_cant_write():
    circular: list = []
    circular.append(circular)
    for value in (circular, {"k": _Str("sub")}, _Str("sub"), {"a": 1j}, float("nan")):
        assert outcome(json_lite.write, value) == outcome(_real_dumps, value)


def test_where_json_isnt_loaded_status_json_is_written_without_it():
    value = {"running": True, "pid": 12, "home": "/h \u00e9", "jobs": {"enabled": 1}, "next": [],
             "in_flight": [{"age_s": 1.5, "state": "running"}], "hermes": None}
    text, loaded = _in_a_fresh_process(f"print(dumps({value!r}))")
    assert loaded == "[]" and text == _real_dumps(value)
