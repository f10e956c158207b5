"""HL7 benchmarks: ADT ingest and ORU delivery against local MLLP peers (``python -m bench.hl7``)."""
