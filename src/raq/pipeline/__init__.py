"""Orchestration: a run from config to outputs (``evaluate``), its scheduling of stages, the
finalize step that turns the store into output files, and merging shards."""
