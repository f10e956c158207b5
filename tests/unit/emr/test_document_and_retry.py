"""Result documents survive the outbox; order details come from the DICOM header; backoff."""

from __future__ import annotations

import random

from pydicom import Dataset

from integrations.emr.document import OrderInfo, ResultDocument
from integrations.retry import RetryPolicy
from tests.emr_samples import result_document


def test_document_round_trips_through_json() -> None:
    document = result_document()
    assert ResultDocument.from_json(document.to_json()) == document


def test_order_is_read_from_request_attributes_then_top_level() -> None:
    dataset = Dataset()
    dataset.AccessionNumber = "ACC1"
    dataset.ReferringPhysicianName = "HOUSE^GREGORY"
    dataset.FillerOrderNumberImagingServiceRequest = "FIL-9"
    request = Dataset()
    request.RequestedProcedureID = "RP-7"
    request.PlacerOrderNumberImagingServiceRequest = "PLC-1"
    request.RequestedProcedureDescription = "CT HEAD"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "24725-4", "LN", "CT Head"
    request.RequestedProcedureCodeSequence = [code]
    issuer = Dataset()
    issuer.LocalNamespaceEntityID = "RIS"
    request.IssuerOfAccessionNumberSequence = [issuer]
    dataset.RequestAttributesSequence = [request]
    order = OrderInfo.from_dataset(dataset)
    assert order.accession_number == "ACC1" and order.issuer_of_accession_number == "RIS"
    assert (order.placer_order_number, order.filler_order_number) == ("PLC-1", "FIL-9")
    assert order.requested_procedure_id == "RP-7"
    assert order.procedure_code is not None and order.procedure_code.value == "24725-4"
    assert order.referring_physician == "HOUSE^GREGORY"
    assert (
        OrderInfo.from_dataset(Dataset(), accession_number="FROM-DB").accession_number == "FROM-DB"
    )


def test_backoff_follows_the_schedule_and_repeats_the_last_delay() -> None:
    schedule = RetryPolicy([1, 5, 30], jitter=0)
    assert [schedule.delay(attempt) for attempt in range(1, 6)] == [1, 5, 30, 30, 30]


def test_jitter_stays_within_bounds() -> None:
    schedule = RetryPolicy([10], jitter=0.2)
    rng = random.Random(7)
    delays = [schedule.delay(1, rng) for _ in range(200)]
    assert min(delays) >= 8 and max(delays) <= 12 and len(set(delays)) > 100
