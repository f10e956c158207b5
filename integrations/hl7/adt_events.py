"""What each ADT trigger event does to a patient's context (pure).

    A01 admit, A04 register     visit starts: ward, bed, physicians, visit number
    A02 transfer                new ward; the old one becomes the prior location
    A03 discharge               no current ward; the last one is kept as the prior location
    A08 update                  demographics and whatever visit data the message carries
    A11 cancel admit            the visit is void: no ward, no admission time
    A13 cancel discharge        back on the ward the patient was discharged from
    A40 merge                   the surviving MRN takes the demographics of the message
                                (moving results is the store's job: integrations.db.patients)

Values the message leaves empty never erase what an earlier message said, so a sparse A08
cannot wipe out a ward.
"""

from __future__ import annotations

from dataclasses import replace

from integrations.emr.context import Location, PatientContext, PatientIdentifier, Provider
from integrations.hl7.adt import AdtMessage


def _or(new: str, old: str) -> str:
    return new if new else old


def _provider(new: Provider, old: Provider) -> Provider:
    return old if new.is_empty else new


def _location(new: Location, old: Location) -> Location:
    return old if new.is_empty else new


def updated_context(
    current: PatientContext | None,
    message: AdtMessage,
    patient_key: str,
    mrn: PatientIdentifier,
) -> PatientContext:
    """The patient's context after ``message`` (``current`` is None for a new patient)."""
    base = current or PatientContext(patient_key=patient_key, identifier=mrn)
    context = replace(
        base,
        patient_key=patient_key,
        identifier=mrn,
        other_identifiers=tuple(item for item in message.identifiers if item != mrn),
        name=base.name if message.name.is_empty else message.name,
        birth_date=_or(message.birth_date, base.birth_date),
        sex=_or(message.sex, base.sex),
        last_event=message.event,
        revision=base.revision + 1,
    )
    visit = message.visit
    if visit is not None:
        context = replace(
            context,
            patient_class=_or(visit.patient_class, context.patient_class),
            attending_doctor=_provider(visit.attending_doctor, context.attending_doctor),
            referring_doctor=_provider(visit.referring_doctor, context.referring_doctor),
            admitting_doctor=_provider(visit.admitting_doctor, context.admitting_doctor),
            visit_number=visit.visit_number or context.visit_number,
        )
    event = message.event
    when = message.recorded_at
    if event in ("A01", "A04") and visit is not None:
        return replace(
            context,
            visit_status="admitted" if event == "A01" else "registered",
            location=visit.location,
            prior_location=_location(visit.prior_location, context.prior_location),
            admitted_at=_or(visit.admitted_at, when),
            discharged_at="",
        )
    if event == "A02" and visit is not None:
        return replace(
            context,
            visit_status="registered" if context.visit_status == "registered" else "admitted",
            location=_location(visit.location, context.location),
            prior_location=_location(visit.prior_location, base.location),
        )
    if event == "A03":
        last = visit.location if visit is not None else Location()
        return replace(
            context,
            visit_status="discharged",
            prior_location=_location(last, base.location),
            location=Location(),
            discharged_at=_or(visit.discharged_at if visit else "", when),
        )
    if event == "A08" and visit is not None:
        return replace(
            context,
            location=_location(visit.location, context.location),
            prior_location=_location(visit.prior_location, context.prior_location),
            admitted_at=_or(visit.admitted_at, context.admitted_at),
        )
    if event == "A11":
        return replace(
            context,
            visit_status="cancelled",
            prior_location=_location(base.location, base.prior_location),
            location=Location(),
            admitted_at="",
        )
    if event == "A13":
        back_to = visit.location if visit is not None else Location()
        return replace(
            context,
            visit_status="admitted",
            location=_location(back_to, base.prior_location),
            discharged_at="",
        )
    return context
