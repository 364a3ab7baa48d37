"""What the daemon and its companions share on disk and between processes: where the files are, how
they are opened safely, locks, process identity, the heartbeat and pidfile, the daemon's command
line, logging. The watchdog imports only this layer and the error types.
"""
