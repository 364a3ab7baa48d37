"""Handing the Hermes agent's cron ticker over to hermes-cron, and back.

`enable` finds Hermes's Python (from the `hermes` executable, or given), checks that its cron
interface is the one the runner was written for, installs our provider plugin in
`$HERMES_HOME/plugins/hermes-cron/`, and sets `cron.provider: hermes-cron` in Hermes's
config.yaml by changing or adding that one line (Hermes's own `config set` rewrites the whole
file and drops comments). The config as it was is kept in our record, so `disable` puts it back
byte for byte, and removes the plugin. Hermes picks its provider when its gateway starts: the
hand-over is active only once its own ticker has stopped (store/hermes_source.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
import time

from hermes_cron.app.jobs import nudge_daemon
from hermes_cron.contract import hermes_plugin
from hermes_cron.contract.files import atomic_write, read_small
from hermes_cron.contract.paths import Home
from hermes_cron.errors import HomeError, InvalidInput
from hermes_cron.logic import yamlkeys
from hermes_cron.store import hermes_source as hs

RECORD_VERSION = 1
CHECK_TIMEOUT = 60.0
PLUGIN_YAML = (f"name: {hermes_plugin.PROVIDER_NAME}\nkind: exclusive\nversion: \"{hermes_plugin.PLUGIN_VERSION}\"\n"
               "description: hermes-cron ticks Hermes's cron jobs (installed by `hermes-cron hermes enable`)\n")


def _safe_executable(path: str) -> str:
    """An absolute path to an executable that nobody but root and this user can replace."""
    if not os.path.isabs(path):
        raise InvalidInput(f"Hermes's Python {path!r} is not an absolute path")
    real = os.path.realpath(path)
    for p in (real, os.path.dirname(real)):
        try:
            st = os.stat(p)
        except OSError as e:
            raise InvalidInput(f"Hermes's Python {path}: {e.strerror}") from None
        if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
            raise InvalidInput(f"Hermes's Python {path}: {p} can be changed by another user "
                               f"(owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}); refusing to run it")
    if not os.access(real, os.X_OK):
        raise InvalidInput(f"Hermes's Python {path} is not executable")
    return path


def find_python(given: str | None = None) -> str:
    """Hermes's Python: `given`, else the interpreter named on the `hermes` executable's #! line."""
    if given:
        return _safe_executable(given)
    hermes = shutil.which("hermes")
    if hermes is None:
        raise InvalidInput("can't find the `hermes` executable on PATH; install hermes-agent, or give its "
                           "Python with --python")
    raw = read_small(os.path.realpath(hermes), ours=0) or b""
    first = raw.split(b"\n", 1)[0].decode(errors="replace")
    if not first.startswith("#!") or "python" not in first:
        raise InvalidInput(f"{hermes} does not name its Python on its #! line; give it with --python")
    return _safe_executable(first[2:].strip().split()[0])


def check_interface(python: str, home: Home) -> str:
    """Ask the runner, in Hermes's Python, whether Hermes has the interface it needs."""
    argv = [python, "-I", hs._runner_script(), "check", home.root, "-"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=CHECK_TIMEOUT, env={**os.environ,
                              "HERMES_HOME": home.root})
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InvalidInput(f"can't run Hermes's Python {python}: {e}") from None
    out = (done.stdout + done.stderr).decode(errors="replace").strip().splitlines()
    if done.returncode != 0:
        raise InvalidInput(out[-1] if out else f"Hermes's Python {python} exited {done.returncode}")
    return out[-1] if out else ""


def _write_config(path: str, data: bytes, mode: int) -> None:
    atomic_write(path, data, ours=0)
    os.chmod(path, mode, follow_symlinks=False)


def _install_plugin(home: Home) -> None:
    folder = hs.plugin_dir(home)
    for d in (os.path.dirname(folder), folder):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            if os.path.islink(d) or not os.path.isdir(d):
                raise HomeError(f"{d} is not a folder; refusing to install the plugin there") from None
    with open(hermes_plugin.__file__, "rb") as f:
        source = f.read()
    atomic_write(os.path.join(folder, "__init__.py"), source, ours=0)
    atomic_write(os.path.join(folder, "plugin.yaml"), PLUGIN_YAML.encode(), ours=0)


def _remove_plugin(home: Home) -> bool:
    folder = hs.plugin_dir(home)
    if not os.path.isdir(folder) or os.path.islink(folder):
        return False
    for name in ("__init__.py", "plugin.yaml"):
        try:
            os.unlink(os.path.join(folder, name))
        except FileNotFoundError:
            pass
    shutil.rmtree(os.path.join(folder, "__pycache__"), ignore_errors=True)
    try:
        os.rmdir(folder)
    except OSError:
        pass  # someone put files of their own there: left as they are
    return True


def enable(home: Home, python: str | None = None, timeout: float | None = None) -> list[str]:
    """Hand Hermes's ticker over; returns what was done, as lines for the user."""
    if home.store is not None:
        raise InvalidInput("Hermes's jobs are served by a daemon on the Hermes home's own (local) store, not "
                           "through a shared store: run `hermes-cron hermes enable` and that daemon without --store")
    home.ensure()
    python = find_python(python)
    said = [f"Hermes's Python: {python} ({check_interface(python, home)})"]
    path = hs.config_path(home)
    before = read_small(path, ours=0)
    text = before.decode() if before is not None else ""
    try:
        current = yamlkeys.child(text, "cron", "provider").value
        after = text if current == hermes_plugin.PROVIDER_NAME else \
            yamlkeys.set_child(text, "cron", "provider", hermes_plugin.PROVIDER_NAME)
    except (yamlkeys.NotUnderstood, UnicodeDecodeError) as e:
        raise InvalidInput(f"can't edit {path} safely ({e}); set cron.provider: {hermes_plugin.PROVIDER_NAME} "
                           "there by hand, then run this again") from None
    old = hs.load_record(home)
    record = {"version": RECORD_VERSION, "python": python, "home": home.root,
              "plugin_version": hermes_plugin.PLUGIN_VERSION, "enabled_at": time.time(), "timeout": timeout}
    if old is not None and "config_before" in old:  # enabled before: the original stays the one to restore
        record.update({k: old[k] for k in ("config_before", "config_existed", "previous_provider") if k in old})
    else:
        record.update(config_before=base64.b64encode(before or b"").decode(), config_existed=before is not None,
                      previous_provider=current)
    _install_plugin(home)
    said.append(f"installed the provider plugin in {hs.plugin_dir(home)} (version {hermes_plugin.PLUGIN_VERSION})")
    data = after.encode()
    record["config_after_sha256"] = hashlib.sha256(data).hexdigest()
    atomic_write(hs.record_path(home), (json.dumps(record, indent=2) + "\n").encode())
    if data != (before or b""):
        mode = stat.S_IMODE(os.stat(path).st_mode) if before is not None else 0o600
        _write_config(path, data, mode)
        said.append(f"set cron.provider: {hermes_plugin.PROVIDER_NAME} in {path} (one line; nothing else changed)")
    else:
        said.append(f"{path} already has cron.provider: {hermes_plugin.PROVIDER_NAME}")
    said.append("Hermes picks its cron provider when its gateway starts: restart it (hermes gateway restart). "
                "Until its own ticker stops, it keeps firing its jobs and hermes-cron leaves them alone.")
    nudge_daemon(home)
    return said


def disable(home: Home) -> list[str]:
    """Give Hermes's ticker back: the config as it was, the plugin gone, our record gone."""
    record = hs.load_record(home)
    path = hs.config_path(home)
    said = []
    now = read_small(path, ours=0)
    if record is not None and "config_before" in record:
        original = base64.b64decode(record["config_before"])
        if now is not None and hashlib.sha256(now).hexdigest() == record.get("config_after_sha256"):
            if record.get("config_existed", True):
                _write_config(path, original, stat.S_IMODE(os.stat(path).st_mode))
                said.append(f"restored {path} as it was before `hermes-cron hermes enable`")
            else:
                os.unlink(path)
                said.append(f"removed {path} (there was none before `hermes-cron hermes enable`)")
        elif now is not None:
            said += _revert_line(path, now, record.get("previous_provider"))
    elif now is not None:
        said += _revert_line(path, now, None)
    if _remove_plugin(home):
        said.append(f"removed the provider plugin from {hs.plugin_dir(home)}")
    try:
        os.unlink(hs.record_path(home))
    except FileNotFoundError:
        if not said:
            return ["hermes-cron was not handling Hermes's jobs; nothing to undo"]
    said.append("Restart Hermes's gateway (hermes gateway restart) so its own ticker fires its jobs again: "
                "until then nobody does.")
    nudge_daemon(home)
    return said


def _revert_line(path: str, data: bytes, previous: str | None) -> list[str]:
    """The config changed since `enable`: put back only the cron.provider line."""
    text = data.decode(errors="replace")
    try:
        found = yamlkeys.child(text, "cron", "provider")
    except yamlkeys.NotUnderstood:
        return [f"left {path} alone: it changed since enable and can't be edited safely; remove "
                f"cron.provider: {hermes_plugin.PROVIDER_NAME} by hand"]
    if found.value != hermes_plugin.PROVIDER_NAME or found.line is None:
        return []
    if previous:
        new = yamlkeys.set_child(text, "cron", "provider", previous)
    else:
        lines = text.splitlines(keepends=True)
        del lines[found.line]
        new = "".join(lines)
    _write_config(path, new.encode(), stat.S_IMODE(os.stat(path).st_mode))
    return [f"{path} changed since enable: only its cron.provider line was put back"]
