"""A job held at the door of its slot (engine/hold.py): its process made and its program loaded
before the slot, not one of its instructions run before it; the same start as an ordinary one
(signals, descriptors, session, limit, working directory); never run when its supervisor dies
or the run is called off; and the programs that must not be held are started the ordinary way."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from conftest import wait_for
from daemon_harness import DaemonProc, finished, kill_leftovers
from hermes_cron.contract.procinfo import CLK_TCK
from hermes_cron.engine import hold

# What a job sees of its own start: ignored and blocked signals, tracer, descriptors, limit,
# session, working directory, standard input.
# (Read with builtins only: a command run from the shell would read it while the shell forks,
# with every signal blocked for that moment.)
PROBE = ('while read k v; do case $k in SigIgn:|SigBlk:|TracerPid:) echo "$k	$v";; esac; done < /proc/$$/status; '
         'printf "fds"; for n in ' + " ".join(map(str, range(64))) + '; do [ -e /proc/$$/fd/$n ] && printf " $n"; done; '
         'echo; echo nofile $(ulimit -n); set -- $(cut -d")" -f2 /proc/$$/stat); echo leader $(( $3 == $$ && $4 == $$ )); '
         'echo cwd $(pwd); echo stdin $(readlink /proc/$$/fd/0)')


def state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def start_held(argv: list[str], out_fd: int, cwd: str = "/", nofile=None) -> hold.Held:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    path = hold.program(argv[0], env)
    assert path is not None
    [held] = hold.hold_all([hold.Start(path, tuple(argv), env, cwd, out_fd, nofile)])
    assert held is not None, "ptrace is refused here: the held start can't be tested"
    return held


def read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()


def test_a_held_job_runs_no_instruction_before_it_is_let_go(tmp_path):
    mark = tmp_path / "ran"
    held = start_held(["/bin/sh", "-c", f"echo ran > {mark}"], 2)
    try:
        assert wait_for(lambda: state(held.pid) == "t", 5, what="the held process in its tracing stop")
        with open(f"/proc/{held.pid}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[0] == b"/bin/sh", "loaded: its program is already the job's"
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # it stays held, however long
            assert not mark.exists()
            time.sleep(0.02)
        assert held.release()
        assert held.wait() == 0 and mark.read_text() == "ran\n"
    finally:
        held.cancel()


def test_a_held_start_gives_the_job_what_an_ordinary_start_does(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = (min(soft, 512), hard)
    argv = ["/bin/sh", "-c", PROBE]
    r, w = os.pipe()
    held = start_held(argv, w, cwd=str(tmp_path), nofile=nofile)
    os.close(w)
    assert held.release() and held.wait() == 0
    seen_held = read_all(r)
    r, w = os.pipe()
    ordinary = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=w, stderr=w, cwd=str(tmp_path),
                                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, start_new_session=True,
                                close_fds=True, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile))
    os.close(w)
    assert ordinary.wait() == 0
    seen_ordinary = read_all(r)
    assert seen_held == seen_ordinary
    for line in ("SigIgn:\t0000000000000000", "SigBlk:\t0000000000000000", "TracerPid:\t0", "fds 0 1 2",
                 f"nofile {nofile[0]}", "leader 1", f"cwd {tmp_path}", "stdin /dev/null"):
        assert line in seen_held.splitlines(), (line, seen_held)


def test_a_held_job_called_off_never_runs(tmp_path):
    mark = tmp_path / "ran"
    held = start_held(["/bin/sh", "-c", f"echo ran > {mark}"], 2)
    held.cancel()
    assert held.returncode == -signal.SIGKILL and not mark.exists()
    assert not os.path.exists(f"/proc/{held.pid}")


def test_a_held_job_dies_with_its_supervisor_and_never_runs(tmp_path):
    """PTRACE_O_EXITKILL: a supervisor killed with -9 takes its held jobs with it; none runs early
    or unwatched."""
    mark = tmp_path / "ran"
    code = ("import os, sys, time\n"
            "from hermes_cron.engine import hold\n"
            f"argv = ('/bin/sh', '-c', 'echo ran > {mark}')\n"
            "[h] = hold.hold_all([hold.Start('/bin/sh', argv, {}, '/', 2, None)])\n"
            "print(h.pid if h else 0, flush=True)\n"
            "time.sleep(60)\n")
    sup = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(sup.stdout.readline())
        assert pid, "ptrace is refused here: the held start can't be tested"
        assert wait_for(lambda: state(pid) == "t", 5, what="the held process in its tracing stop")
        sup.kill()
        sup.wait()
        wait_for(lambda: not os.path.exists(f"/proc/{pid}") or state(pid) == "Z", 5, what="the held job gone")
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            assert not mark.exists(), "a held job ran after its supervisor died"
            time.sleep(0.05)
    finally:
        sup.kill()
        sup.wait()


def test_programs_that_must_not_be_held_are_started_the_ordinary_way(tmp_path):
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    for mode in (0o4755, 0o2755):  # a traced exec would drop their privileges
        prog = tmp_path / f"priv-{mode:o}"
        shutil.copy("/bin/true", prog)
        os.chmod(prog, mode)
        assert hold.program(str(prog), env) is None
        assert hold.program(prog.name, env) is None
    assert hold.program("no-such-program-anywhere", env) is None
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\nexit 0\n")
    os.chmod(plain, 0o644)
    assert hold.program(str(plain), env) is None, "not executable"
    os.chmod(plain, 0o755)
    assert hold.program("plain", env) == str(plain), "found on the job's PATH, as exec would"
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01 not a program\n")
    os.chmod(garbage, 0o755)
    assert hold.hold_all([hold.Start(str(garbage), (str(garbage),), env, "/", 2, None)]) == [None], \
        "an exec that fails is not held: the ordinary start on the slot reports it"


@pytest.mark.slow
def test_the_daemon_holds_a_scheduled_job_before_its_slot_and_lets_it_go_on_it(cli, home):
    """The job's process exists before its slot (made and loaded, held), but its first
    instruction and everything after come on the slot; its start is an ordinary one."""
    r = cli("add", "probe", "--schedule", "every 1s", "--",
            "/bin/sh", "-c", 'read up _ < /proc/uptime; echo up $up; echo born $(cut -d")" -f2 /proc/$$/stat | cut -d" " -f21); '
            'echo now $(date +%s.%N); ' + PROBE)
    assert r.returncode == 0, r.stderr
    d = DaemonProc(home, "--tick-interval", "60")
    try:
        d.wait_started()
        done = wait_for(lambda: finished(home, "probe")[:3] if len(finished(home, "probe")) >= 3 else None, 30,
                        what="three runs of the probe")
    finally:
        d.stop()
        kill_leftovers(home)
    ages = []
    for run in done:
        with open(run.output) as f:
            out = dict((line.split(None, 1) + [""])[:2] for line in f.read().splitlines())
        assert float(out["now"]) >= run.scheduled and run.started_at >= run.scheduled, "nothing before its slot"
        # how long its process existed before its first command ran (10 ms resolution)
        ages.append(float(out["up"]) - int(out["born"]) / CLK_TCK)
        assert out["fds"] == "0 1 2" and out["stdin"] == "/dev/null" and out["leader"] == "1"
        assert out["TracerPid:"].strip() == "0" and out["SigIgn:"].strip() == "0000000000000000"
    # (the first slot after the daemon's start may come sooner than the lead)
    assert all(age >= 0.05 for age in ages[1:]), f"made and held before the slot: {ages}"


SUPERVISOR = r"""
import sys, time
from hermes_cron.contract.paths import Home
from hermes_cron.engine.launch import Launch
from hermes_cron.engine.supervisor import HOLD_AHEAD, StopFlag, Supervisor
from hermes_cron.logic.jobs import Job
import os
home = Home(sys.argv[1]); home.ensure()
job = Job(name="later", command=("/bin/sh", "-c", sys.argv[2]), schedule="every 1h", tz="UTC")
at = time.time() + HOLD_AHEAD + 1.0
launch = Launch.of(1, job, at, home.run_dir(job.name, 1), home.root)
print(launch.files.output, at, flush=True)
r, _ = os.pipe()
sys.exit(Supervisor([launch], StopFlag(), r, None).run())
"""


@pytest.mark.slow
def test_a_run_due_later_than_the_hold_window_is_waited_for_not_spun_for(tmp_path):
    """A supervisor given a run due beyond HOLD_AHEAD (a retry, say) sleeps until the run comes
    within it, then holds it, and starts it on its slot."""
    probe = 'read up _ < /proc/uptime; echo $up $(cut -d")" -f2 /proc/$$/stat | cut -d" " -f21); date +%s.%N'
    sup = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(tmp_path / "home"), probe],
                           stdout=subprocess.PIPE, text=True)
    try:
        output, at = sup.stdout.readline().split()
        with open(f"/proc/{sup.pid}/schedstat") as f:
            cpu0 = int(f.read().split()[0])
        time.sleep(2.0)  # (a span of time is what this measures)
        with open(f"/proc/{sup.pid}/schedstat") as f:
            cpu = (int(f.read().split()[0]) - cpu0) / 1e9
        assert cpu < 0.2, f"the supervisor spun while waiting: {cpu:.2f} s of CPU in 2 s"
        assert sup.wait(30) == 0
    finally:
        sup.kill()
        sup.wait()
    with open(output) as f:
        up, born, now = f.read().split()
    assert float(now) >= float(at), "nothing before its slot"
    assert float(up) - int(born) / CLK_TCK >= 0.05, "its process was made and held before the slot"


def test_holds_are_paced_by_the_last_chunk_so_none_runs_past_the_slot(tmp_path, monkeypatch):
    """On a busy machine a hold takes longer than the 3 ms a chunk is first sized for: the next
    chunks are sized at the pace the last one took, so the supervisor is never still holding
    (it can't stop a chunk half way) when its first slot comes."""
    from hermes_cron.contract.paths import Home
    from hermes_cron.engine import supervisor as sv
    from hermes_cron.engine.launch import Launch
    from hermes_cron.logic.jobs import Job

    chunks: list[tuple[float, int]] = []  # (when each chunk ended, its size)

    def slow_hold_all(starts):
        time.sleep(0.01 * len(starts))  # 10 ms a hold, where HOLD_EACH says 3
        chunks.append((time.time(), len(starts)))
        return [None] * len(starts)

    monkeypatch.setattr(sv.hold, "hold_all", slow_hold_all)
    home = Home(str(tmp_path / "home"))
    home.ensure()
    later = time.time() + 60
    launches = [Launch.of(i, Job(name=f"j{i}", command=("/bin/true",), schedule="every 1h", tz="UTC"), later,
                          home.run_dir(f"j{i}", i), home.root) for i in range(1, 81)]
    r, w = os.pipe()
    sup = sv.Supervisor(launches, sv.StopFlag(), r, None)
    # The slot is set once the supervisor is made (making 80 runs' files takes a while on a busy
    # machine, and the test is about the time left after it).
    at = time.time() + 0.5
    for run in sup.pending:
        run.launch = replace(run.launch, start_at=at)
    try:
        while sup._hold_ahead() == 0.0:
            pass
    finally:
        for run in sup.pending:
            run.close()
        os.close(r)
        os.close(w)
    assert chunks and chunks[0][1] == sv.HOLD_CHUNK
    assert len(chunks) > 2 and chunks[-1][1] < sv.HOLD_CHUNK, "the chunks shrank as the slot came near"
    assert max(end for end, _ in chunks) < at, f"a chunk ran past the slot: {[(round(e - at, 3), n) for e, n in chunks]}"


def test_the_hold_window_covers_the_longest_lead():
    """A burst is claimed up to LEAD + MAX_LEAD before its slot: its supervisors may hold all of
    it from the hand-over on."""
    from hermes_cron.engine.supervisor import HOLD_AHEAD
    from hermes_cron.logic.wake import LEAD, MAX_LEAD

    assert HOLD_AHEAD >= LEAD + MAX_LEAD
