"""eventodb-cli: operations toolkit for EventoDB (Message DB-compatible message store)."""

__version__ = "0.1.0"
