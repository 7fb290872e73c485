"""Faults: network (through the proxy), process, database and release."""
