"""Producer: files in, chunk tasks out. Reads with llama-index readers, chunks in model tokens."""
