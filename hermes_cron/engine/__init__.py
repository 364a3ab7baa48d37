"""The engine: the scheduler (claims under the tick lock), the dispatcher, the supervisors that
start jobs, and the daemon loop.
"""
