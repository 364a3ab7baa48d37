"""What the commands do, in terms of the engine and the store: job edits, triggers,
start/stop/status.
"""
