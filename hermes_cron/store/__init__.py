"""Where jobs and runs are kept: the store interface, its SQLite-and-jobs.json implementation, and the run folders."""
