"""Settings and the message contract shared by the producer and the workers."""

from dropvec.config.settings import Settings

__all__ = ["Settings"]
