"""Everything that touches llama.cpp: one model, one context, on one thread."""
