"""Fleet-wide network allow-list auditor."""

__version__ = "0.1.0"
