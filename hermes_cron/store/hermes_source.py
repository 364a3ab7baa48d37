"""The Hermes agent's side of a shared home, read-only: its jobs (`cron/jobs.json`), its zone and
cron provider (`config.yaml`), its ticker's heartbeat (`cron/ticker_heartbeat`), our provider
plugin (`plugins/hermes-cron/`), and our own record of the hand-over
(`cron/hermes-cron-hermes.json`, written by `hermes-cron hermes enable`).

hermes-cron ticks Hermes's jobs only while the hand-over is active, judged on positive evidence:
our record, `cron.provider: hermes-cron` in Hermes's config, our plugin in place, and Hermes's own
ticker heartbeat not moving (absent, or older than HERMES_TICKER_STALE). Otherwise Hermes's built-in
ticker fires them, and two tickers must never both do.

Nothing here writes a Hermes file. A jobs.json we can't parse never stops native jobs: the error
is kept for `status`, and the last good reading stays in force.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from hermes_cron.contract.files import MISSING, Signature, read_private, read_small, signature
from hermes_cron.contract.hermes_plugin import PROVIDER_NAME
from hermes_cron.contract.paths import Home
from hermes_cron.errors import HermesCronError
from hermes_cron.logic import yamlkeys
from hermes_cron.logic.hermes import HermesJob, Runner, read_job
from hermes_cron.logic.jobs import Job
from hermes_cron.logic.jsondata import json_object

HERMES_TICKER_STALE = 150.0  # Hermes's ticker beats every 60 s: 2.5 beats without one is "not moving"
MAX_JOBS_FILE = 64 << 20


def config_path(home: Home) -> str:
    return os.path.join(home.root, "config.yaml")


def plugin_dir(home: Home) -> str:
    return os.path.join(home.root, "plugins", PROVIDER_NAME)


def record_path(home: Home) -> str:
    return home.hermes_record


def hermes_heartbeat_path(home: Home) -> str:
    return home._in("ticker_heartbeat")


def read_config(home: Home) -> str | None:
    raw = read_small(config_path(home), ours=0)
    return raw.decode(errors="replace") if raw is not None else None


def zone(home: Home, config: str | None) -> str:
    """Hermes's zone: HERMES_TIMEZONE, else `timezone` in its config, else the machine's."""
    from hermes_cron.logic.zones import load_zone, local_zone_name

    for candidate in (os.environ.get("HERMES_TIMEZONE", "").strip(),
                      yamlkeys.top(config, "timezone") if config else ""):
        if candidate:
            try:
                load_zone(candidate)
                return candidate
            except HermesCronError:
                continue  # Hermes too falls back past an invalid zone
    return local_zone_name()


def provider(config: str | None) -> str | None:
    if config is None:
        return None
    try:
        return yamlkeys.child(config, "cron", "provider").value
    except yamlkeys.NotUnderstood:
        return None


def plugin_version(home: Home) -> str | None:
    raw = read_small(os.path.join(plugin_dir(home), "__init__.py"), ours=0)
    if raw is None:
        return None
    for line in raw.decode(errors="replace").splitlines():
        if line.startswith("PLUGIN_VERSION = "):
            return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"


def hermes_ticker_age(home: Home, now: float) -> float | None:
    """Seconds since Hermes's own ticker last beat (None: it never did here)."""
    path = hermes_heartbeat_path(home)
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return None
    stamp = mtime
    raw = read_small(path)
    if raw:
        try:
            stamp = max(stamp, float(raw.decode().split()[0]))
        except (ValueError, IndexError, UnicodeDecodeError):
            pass
    return max(0.0, now - stamp)


def load_record(home: Home) -> dict | None:
    try:
        return json_object(read_private(record_path(home)))
    except HermesCronError:
        return None


@dataclass(frozen=True)
class Handover:
    """Whether hermes-cron ticks Hermes's jobs now, and the evidence."""

    active: bool
    why: str
    record: dict | None
    provider: str | None
    plugin: str | None  # the installed plugin's version
    hermes_ticker_age: float | None

    @property
    def runner(self) -> Runner | None:
        record = self.record or {}
        python, timeout = record.get("python"), record.get("timeout")
        if not isinstance(python, str) or not python:
            return None
        timeout = float(timeout) if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) \
            and timeout > 0 else None
        return Runner(python, _runner_script(), str(record.get("home", "")), timeout)


def _runner_script() -> str:
    from hermes_cron.contract import hermes_fire

    return os.path.abspath(hermes_fire.__file__)


def handover(home: Home, now: float | None = None, config: str | None = None) -> Handover:
    now = time.time() if now is None else now
    config = read_config(home) if config is None else config
    record = load_record(home)
    prov, plugin = provider(config), plugin_version(home)
    age = hermes_ticker_age(home, now)
    if record is None:
        why = "not handed over (run: hermes-cron hermes enable)"
    elif prov != PROVIDER_NAME:
        why = f"Hermes's config.yaml has cron.provider {prov or 'unset'!r}, not {PROVIDER_NAME!r} (run: hermes-cron hermes enable)"
    elif plugin is None:
        why = f"the plugin is missing from {plugin_dir(home)} (run: hermes-cron hermes enable)"
    elif age is not None and age <= HERMES_TICKER_STALE:
        why = (f"Hermes's own ticker is still running (its heartbeat is {age:.0f} s old): restart Hermes's gateway "
               "so it picks the hermes-cron provider")
    else:
        return Handover(True, "hermes-cron fires Hermes's jobs (Hermes's own ticker is off)", record, prov, plugin,
                        age)
    return Handover(False, why, record, prov, plugin, age)


@dataclass
class HermesView:
    """What one reading of Hermes's jobs.json gave."""

    sig: Signature = MISSING
    jobs: dict[str, HermesJob] = field(default_factory=dict)  # by our name
    error: str | None = None  # why the current file can't be read (the jobs are the last good reading)

    def schedulable(self) -> dict[str, Job]:
        return {name: hj.job for name, hj in self.jobs.items() if hj.job is not None}


def parse_jobs(data: bytes, zone_name: str, runner: Runner | None) -> dict[str, HermesJob]:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ValueError(f"not valid JSON ({e})") from None
    if isinstance(doc, list):
        records = doc
    elif isinstance(doc, dict) and isinstance(doc.get("jobs"), list) and "version" not in doc:
        records = doc["jobs"]
    else:
        raise ValueError("not a Hermes job file (no \"jobs\" list)")
    out: dict[str, HermesJob] = {}
    for record in records:
        hj = read_job(record, zone_name, runner)
        if hj is not None:
            out.setdefault(hj.our_name, hj)
    return out


class HermesSource:
    """Hermes's jobs for the scheduler: re-read when jobs.json, config.yaml or our record changes."""

    def __init__(self, home: Home):
        self.home = home
        self.view = HermesView()
        self.token = ""
        self._key: tuple | None = None

    def read(self, config: str | None = None, runner: Runner | None = None) -> HermesView:
        path = self.home.legacy_jobs
        sig = signature(path)
        zone_name = zone(self.home, config if config is not None else read_config(self.home))
        key = (sig, zone_name, runner)
        if key == self._key:
            return self.view
        self._key = key
        self.token = f"{sig.text()}/{zone_name}/{runner.python if runner else ''}"
        if sig == MISSING:
            self.view = HermesView(sig)
            return self.view
        try:
            data = read_private(path)
            if data is None:
                self.view = HermesView(MISSING)
                return self.view
            if len(data) > MAX_JOBS_FILE:
                raise ValueError(f"larger than {MAX_JOBS_FILE >> 20} MiB")
            jobs = parse_jobs(data, zone_name, runner)
        except (ValueError, HermesCronError) as e:
            self.view = HermesView(sig, self.view.jobs, f"{path}: {e}")
            return self.view
        self.view = HermesView(sig, jobs, None)
        return self.view


@dataclass(frozen=True)
class MergedSig:
    """The version of the definitions the schedule rows were reconciled with: our job file's,
    and (while the hand-over is active) the reading of Hermes's jobs it included."""

    native: Signature
    hermes: str

    def text(self) -> str:
        return self.native.text() + (f"|hermes:{self.hermes}" if self.hermes else "")


class Scheduled:
    """Hermes's jobs as the scheduler sees them at a tick: none unless the hand-over is active."""

    def __init__(self, home: Home):
        self.home = home
        self.source = HermesSource(home)
        self.handover: Handover | None = None
        self._checked = 0.0

    def current(self, now: float | None = None) -> tuple[str, HermesView | None]:
        """(a token naming this reading, the view), or ("", None) while Hermes ticks its own jobs."""
        now = time.time() if now is None else now
        if self.home.store is not None:
            # A shared store's schedule is every host's: Hermes's jobs belong to the one host whose
            # Hermes home holds them, and are served by a daemon of that home on the local store.
            return "", None
        if not self.home.hermes_here:
            self.handover = None  # no Hermes here: two stats a tick, nothing read
            return "", None
        config = read_config(self.home)
        self.handover = h = handover(self.home, now, config)
        if not h.active:
            return "", None
        view = self.source.read(config, h.runner)
        return self.source.token, view


def with_hermes(defs, home: Home):
    """`defs` (our job file's Definitions) with Hermes's jobs added while the hand-over is active."""
    return merge(defs, *Scheduled(home).current())


def merge(defs, token: str, view: HermesView | None):
    from hermes_cron.store.jobstore import Definitions

    if view is None:
        return Definitions(defs.jobs, MergedSig(defs.sig, ""), defs.invalid, defs.defaults_raw)
    jobs = dict(defs.jobs)
    for name, job in view.schedulable().items():
        jobs.setdefault(name, job)
    return Definitions(jobs, MergedSig(defs.sig, token), defs.invalid, defs.defaults_raw)
