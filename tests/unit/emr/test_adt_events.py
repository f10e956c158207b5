"""What each trigger event does to the patient context."""

from __future__ import annotations

from integrations.emr.context import PatientContext
from integrations.emr.identifiers import MrnRules
from integrations.hl7.adt import parse_adt
from integrations.hl7.adt_events import updated_context
from tests.emr_samples import adt

RULES = MrnRules()


def apply(context: PatientContext | None, text: str) -> PatientContext:
    message = parse_adt(text, ["2.5.1"])
    mrn = RULES.select_mrn(message.identifiers)
    assert mrn is not None
    return updated_context(context, message, str(RULES.hl7_key(mrn)), mrn)


def test_admit_transfer_discharge_cancel() -> None:
    admitted = apply(None, adt("A01", "1", ward="WARD-A", room="101", bed="1"))
    assert (admitted.visit_status, admitted.location.point_of_care, admitted.location.bed) == (
        "admitted",
        "WARD-A",
        "1",
    )
    assert admitted.admitted_at == "20260301090000" and admitted.revision == 1
    assert admitted.patient_key == "HOSP|12345"

    transferred = apply(admitted, adt("A02", "2", ward="ICU", room="7", bed="2"))
    assert transferred.location.point_of_care == "ICU"
    assert transferred.prior_location.point_of_care == "WARD-A"
    assert transferred.visit_status == "admitted" and transferred.revision == 2

    discharged = apply(
        transferred, adt("A03", "3", ward="ICU", room="7", bed="2", when="20260305120000")
    )
    assert discharged.location.is_empty
    assert discharged.prior_location.point_of_care == "ICU"
    assert discharged.discharged_at == "20260305120000"
    assert discharged.visit_status == "discharged"

    back = apply(discharged, adt("A13", "4", ward=""))
    assert back.visit_status == "admitted" and back.location.point_of_care == "ICU"
    assert back.discharged_at == ""


def test_sparse_update_does_not_erase() -> None:
    admitted = apply(None, adt("A01", "1", ward="WARD-A"))
    sparse = (
        adt("A08", "2", ward="")
        .replace("1234^CUDDY^LISA^^^DR", "")
        .replace("MÜLLER^JÜRGEN^^^^^L", "")
    )
    updated = apply(admitted, sparse)
    assert updated.location.point_of_care == "WARD-A"
    assert updated.attending_doctor.family == "CUDDY"
    assert updated.name.family == "MÜLLER"
    assert updated.last_event == "A08"


def test_cancel_admit_voids_the_visit() -> None:
    cancelled = apply(apply(None, adt("A01", "1", ward="WARD-A")), adt("A11", "2", ward="WARD-A"))
    assert cancelled.visit_status == "cancelled" and cancelled.location.is_empty
    assert cancelled.admitted_at == ""


def test_register_outpatient() -> None:
    registered = apply(None, adt("A04", "1", ward="XRAY", patient_class="O"))
    assert (registered.visit_status, registered.patient_class) == ("registered", "O")


def test_context_survives_json() -> None:
    context = apply(apply(None, adt("A01", "1")), adt("A02", "2", ward="ICU"))
    assert PatientContext.from_json(context.to_json()) == context
