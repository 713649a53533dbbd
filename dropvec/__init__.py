"""dropvec: drop files in a folder, find their chunks in Milvus."""

__version__ = "0.1.0"
