"""``pacsflow doctor``: go-live checks, pure judgements (checks) over I/O probes (probes)."""
