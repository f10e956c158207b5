"""The go-live acceptance suite: cases with ground truth, the run against a site, the signed
record (see :mod:`integrations.acceptance.suite`)."""
