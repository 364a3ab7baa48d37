"""settle(): what to do with a run nobody alive answers for, for every combination of the facts,
without a process."""

from __future__ import annotations

import itertools

import pytest

from hermes_cron.logic.run import RunState
from hermes_cron.logic.settle import Action, Facts, Token, read_token, settle

NOW = 1_000_000.0


def facts(**kw) -> Facts:
    base = dict(state=RunState.CLAIMED, token=Token.NONE, token_detail="", scheduled=NOW - 5, claimed_at=NOW - 6,
                misfire_grace=600.0, handed_supervisor_alive=False, token_supervisor_alive=False,
                job_alive=False, owned_by_other_live_process=False, now=NOW, owner_pid=11,
                handed_supervisor_pid=22)
    base.update(kw)
    return Facts(**base)


ROWS = [
    # (what, facts, action, a piece of the reason)
    ("another live process owns it", dict(owned_by_other_live_process=True, token=Token.SUPERVISOR), Action.LEAVE, ""),
    ("claimed ahead of its slot", dict(scheduled=NOW + 0.2), Action.LEAVE, "ahead"),
    ("claimed, no job copy", dict(misfire_grace=None), Action.LEAVE, "no valid copy"),
    ("claimed, within grace", dict(scheduled=NOW - 5), Action.START, "5.000"),
    ("claimed, exactly at grace", dict(scheduled=NOW - 600), Action.START, ""),
    ("claimed, past grace", dict(scheduled=NOW - 601), Action.ABANDON, "past the misfire grace"),
    ("manual, claimed, no slot: claim time counts", dict(scheduled=None, claimed_at=NOW - 700), Action.ABANDON,
     "pid 11"),
    ("handed over, supervisor waits", dict(state=RunState.HANDED, handed_supervisor_alive=True), Action.WATCH_SUPERVISOR, ""),
    ("handed over, supervisor died unstarted", dict(state=RunState.HANDED), Action.CANCEL, "pid 22"),
    ("started, supervisor alive", dict(state=RunState.HANDED, token=Token.SUPERVISOR, token_supervisor_alive=True),
     Action.WATCH_SUPERVISOR, ""),
    ("started, supervisor gone, job alive", dict(state=RunState.HANDED, token=Token.SUPERVISOR, job_alive=True),
     Action.WATCH_JOB, ""),
    ("started, both gone, no result", dict(state=RunState.HANDED, token=Token.SUPERVISOR, token_detail="33"),
     Action.INTERRUPT, "pid 33"),
    ("abandoned", dict(token=Token.ABANDONED, token_detail="44"), Action.INTERRUPT, "abandoned by pid 44"),
    ("cancelled by pause", dict(token=Token.CANCELLED, token_detail="job paused"), Action.INTERRUPT,
     "job paused before it started"),
    ("replaced", dict(token=Token.REPLACED, token_detail="7"), Action.INTERRUPT, "replaced by run 7"),
    ("unreadable token", dict(state=RunState.HANDED, token=Token.UNREADABLE), Action.INTERRUPT, "can't be read"),
]


@pytest.mark.parametrize("what,kw,action,piece", ROWS, ids=[r[0] for r in ROWS])
def test_settle_rows(what, kw, action, piece):
    decision = settle(facts(**kw))
    assert decision.action is action
    assert piece in decision.reason


def all_facts():
    for state, token, handed, in_token, job, other, slot, grace in itertools.product(
            tuple(RunState)[:3], list(Token), (False, True), (False, True), (False, True), (False, True),
            (None, NOW - 5, NOW - 900, NOW + 1), (None, 600.0)):
        yield facts(state=state, token=token, handed_supervisor_alive=handed, token_supervisor_alive=in_token,
                    job_alive=job, owned_by_other_live_process=other, scheduled=slot, misfire_grace=grace)


def test_every_combination_keeps_the_rules():
    seen = set()
    for f in all_facts():
        d = settle(f)
        seen.add(d.action)
        if f.owned_by_other_live_process:
            assert d.action is Action.LEAVE, f  # never take what a live process answers for
        if d.action in (Action.START, Action.ABANDON, Action.CANCEL):
            assert f.token is Token.NONE, f  # only a run nobody took can be started or given up
        if d.action is Action.START:
            assert f.state is RunState.CLAIMED and f.misfire_grace is not None
            assert f.scheduled is None or f.scheduled <= f.now, f  # never before its slot
        if d.action is Action.INTERRUPT:
            assert not (f.token is Token.SUPERVISOR and (f.token_supervisor_alive or f.job_alive)), f
        if f.token is Token.SUPERVISOR and not f.owned_by_other_live_process:
            assert d.action in (Action.WATCH_SUPERVISOR, Action.WATCH_JOB, Action.INTERRUPT), f
    assert seen == set(Action)


@pytest.mark.parametrize("content,present,kind,detail", [
    (None, False, Token.NONE, ""),
    (None, True, Token.UNREADABLE, ""),
    ({"run_id": 1, "reaper_pid": 5, "reaper_start": 9}, True, Token.SUPERVISOR, "5"),
    ({"abandoned_by": 8}, True, Token.ABANDONED, "8"),
    ({"cancelled": "job removed"}, True, Token.CANCELLED, "job removed"),
    ({"cancelled_by_run": 3}, True, Token.REPLACED, "3"),
    ({"something": "else"}, True, Token.UNREADABLE, ""),
])
def test_reading_a_start_token(content, present, kind, detail):
    assert read_token(content, present) == (kind, detail)
