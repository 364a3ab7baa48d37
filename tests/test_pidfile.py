"""contract/pidfile.py: what a pidfile says, whatever someone left in it (the pidfile is read by
`status`, `stop` and the watchdog; its second line is read by json_lite)."""

from __future__ import annotations

import os

import pytest

from hermes_cron.contract.pidfile import read_pidfile, write_pidfile
from hermes_cron.contract.procinfo import ProcId


@pytest.fixture
def pidfile(tmp_path):
    folder = tmp_path / "cron"
    folder.mkdir(mode=0o700)
    return str(folder / "hermes-cron.pid")


def _plant(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, text.encode())
    os.close(fd)


def test_what_the_daemon_writes_reads_back(pidfile):
    me = ProcId.me()
    write_pidfile(pidfile, me, ["/usr/bin/python3", "-m", "hermes_cron", "run", "--home", "/h \u00e9"], "/h",
                  1795976191.5)
    info = read_pidfile(pidfile)
    assert (info.pid, info.pid_start, info.proc) == (me.pid, me.start, me)
    assert info.argv[-1] == "/h \u00e9" and info.home == "/h" and info.started_at == 1795976191.5


@pytest.mark.parametrize("second_line", ["", "not json", "[1, 2]", '"text"', "null", '{"pid_start": "12"}',
                                         '{"argv": "python -m hermes_cron"}', '{"argv": ["a", 1]}',
                                         "[" * 100000, '{"pid_start": 1e999}', '{"pid_start": true}'])
def test_a_second_line_that_isnt_the_daemons_leaves_a_bare_pid(pidfile, second_line):
    """Never an exception, and never a start time (which alone lets anyone signal the pid)."""
    _plant(pidfile, f"4242\n{second_line}\n")
    info = read_pidfile(pidfile)
    assert info is not None and info.pid == 4242 and info.pid_start is None and info.proc is None
    assert isinstance(info.argv, list) and all(isinstance(a, str) for a in info.argv)


@pytest.mark.parametrize("text", ["", "\n", "abc\n", "-1\n", " \n{}"])
def test_a_first_line_without_a_pid_is_no_pidfile(pidfile, text):
    _plant(pidfile, text)
    assert read_pidfile(pidfile) is None


def test_a_missing_pidfile_is_none(pidfile):
    assert read_pidfile(pidfile) is None
