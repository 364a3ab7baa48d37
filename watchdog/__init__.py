"""hermes-cron-watchdog: notices a hung or dead hermes-cron daemon and brings it back, safely.

Installed as `hermes_cron_watchdog` (a package named `watchdog` would shadow the PyPI library of
that name). It reads only the daemon's published contract: the heartbeat file and the pidfile.
"""

__version__ = "0.1.0"
