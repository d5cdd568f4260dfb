"""Transports run a probe job on a host and return its raw, bounded output."""
