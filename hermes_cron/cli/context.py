"""Who a command acts as, on which home and store: settled once per command, before any file in
the home is read. Without click, so that the quick path (cli/quick.py) can use it."""

from __future__ import annotations

import sys


class Context:
    def __init__(self, home: str | None, store: dict, store_url: str | None = None):
        self._home_opt = home
        self._store = store
        self._store_opt = store_url

    @property
    def home(self):  # -> paths.Home
        """The home, once this process has settled who it acts as on it (see access.py): root on
        another user's home becomes that user here, before any file in it is read."""
        from hermes_cron.contract.paths import Home, resolve_home, resolve_store

        root = resolve_home(self._home_opt)
        url = resolve_store(self._store_opt)
        if "acting" not in self._store:
            from hermes_cron.contract.access import settle

            self._store["acting"] = settle(root, preload=_preload)
            from hermes_cron.store.migrate import NOTE, legacy_store_waiting, migrate

            home = Home(root)
            if legacy_store_waiting(home) and migrate(home):
                print(f"hermes-cron: {NOTE}", file=sys.stderr)
        return Home(root, url)

    @property
    def became_user(self) -> bool:
        """Whether root became the home's owner to act on it (settled by `home`)."""
        return bool(self._store.get("acting"))


def _preload() -> None:
    """Import every module a command may need, while we are still root: the user we become may
    not be allowed to read this installation (a Python under /root, say)."""
    import importlib
    import pkgutil

    import hermes_cron

    for module in pkgutil.walk_packages(hermes_cron.__path__, "hermes_cron."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    for name in ("json", "pwd", "re", "shlex", "selectors", "shutil", "socket", "sqlite3",
                 "subprocess", "zoneinfo", "resource", "select", "signal", "errno", "fcntl"):
        importlib.import_module(name)
