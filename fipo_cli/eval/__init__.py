"""`fipo eval`: problems, generation engines, samples.jsonl, grading and metrics."""
