"""Helpers of the remote tests: real servers on loopback, and child-process workers."""
