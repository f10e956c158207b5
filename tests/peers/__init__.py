"""Stand-alone peer processes the tests start: an EMR's MLLP receiver and a FHIR server."""
