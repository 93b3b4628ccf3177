"""Imported once by the local executor's fork server: every cell's process forks with these loaded."""

from harness.worker import preload

preload()
