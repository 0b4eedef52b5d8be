"""Shared command-line plumbing: flag definitions that tolerate several entry points in one process, and the one
wrapper that turns a user error into one line and exit code 2."""
