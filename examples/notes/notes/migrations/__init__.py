"""Hand-written migrations of the notes app (the autodetector is never run on them)."""
