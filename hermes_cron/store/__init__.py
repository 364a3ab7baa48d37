"""Where jobs and runs are kept: the store interface, its SQLite-and-JSON implementation, and the
run folders.
"""
