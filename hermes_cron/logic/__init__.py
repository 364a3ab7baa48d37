"""Pure logic: schedules, zones, durations, jobs, the misfire/overlap policy and the life of a run.
No files, no processes, no clock of its own.
"""
