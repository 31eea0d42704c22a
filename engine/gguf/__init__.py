"""Reading GGUF files: headers, validation, architecture (a leaf: no llama.cpp, no catalog)."""
