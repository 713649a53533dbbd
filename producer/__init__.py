"""Producer: files in, chunk tasks out. Reads each format with its own library, chunks in model tokens."""
