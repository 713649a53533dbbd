"""Settings and the message contract shared by the producer and the workers."""

from config.settings import Settings

__all__ = ["Settings"]
