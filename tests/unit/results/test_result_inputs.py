"""Input digest and UIDs: the same inputs give the same objects byte for byte, changed inputs
new UIDs, and an SR that replaces another names it."""

from __future__ import annotations

import dataclasses

from integrations.dicom.result_inputs import overlay_inputs_digest, report_inputs_digest
from integrations.dicom.result_objects import PredecessorReport, build_result_objects
from integrations.settings import ResultsSettings
from models.interval_change import no_prior, prior_without_measurements
from models.results import UrgencyTier
from tests.unit.results import synthetic
from tests.unit.results.conftest import ALL_CARRIERS

NOW = synthetic.FIXED_NOW
PROFILE = ResultsSettings(carriers=ALL_CARRIERS)


def head_ct():
    lesion = synthetic.Lesion((40.0, 70.0), (9.0, 7.0))
    images, _ = synthetic.ct_series(lesion=lesion)
    return images, synthetic.head_ct_analysis(images, lesion, diameter_mm=21.0)


def built(analysis, sources, profile=PROFILE, **kwargs):
    return build_result_objects(analysis, sources, profile=profile, now=NOW, **kwargs)


def uids(result_set) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in result_set:
        found.setdefault(item.kind.value, []).append(item.sop_instance_uid)
    return found


def test_the_same_inputs_give_the_same_uids_and_the_same_bytes():
    images, analysis = head_ct()
    first, again = built(analysis, images), built(analysis, images)
    assert [item.to_bytes() for item in first] == [item.to_bytes() for item in again]
    # the time the inference took is not an input
    slower = dataclasses.replace(analysis, inference_seconds=analysis.inference_seconds + 3.0)
    assert uids(built(slower, images)) == uids(first)


def test_every_changed_input_gives_new_uids_for_what_it_changes():
    images, analysis = head_ct()
    first = uids(built(analysis, images))
    late_image = synthetic.ct_series(slices=len(images) + 1)[0][-1]
    model = analysis.model
    changed = {
        "threshold": dataclasses.replace(
            analysis,
            findings=tuple(
                dataclasses.replace(finding, threshold=finding.threshold + 0.01)
                for finding in analysis.findings
            ),
        ),
        "urgency rule": dataclasses.replace(
            analysis,
            findings=tuple(
                dataclasses.replace(finding, tier=UrgencyTier.URGENT)
                for finding in analysis.findings
            ),
        ),
        "model version": dataclasses.replace(
            analysis, model=dataclasses.replace(model, version=model.version + ".1")
        ),
        "weights": dataclasses.replace(
            analysis, model=dataclasses.replace(model, weights_sha256="0" * 64)
        ),
    }
    seen = {uid for kind_uids in first.values() for uid in kind_uids}
    for what, other in changed.items():
        again = uids(built(other, images))
        assert set(again) == set(first), what
        for kind, kind_uids in again.items():
            assert seen.isdisjoint(kind_uids), (what, kind)
    with_late_image = uids(built(analysis, [*images, late_image]))
    assert seen.isdisjoint(uid for kind_uids in with_late_image.values() for uid in kind_uids)
    other_profile = uids(built(analysis, images, ResultsSettings(carriers=["sr", "gsps"])))
    assert other_profile["sr"] != first["sr"]  # its list of carriers not produced changed


def test_a_prior_changes_the_sr_but_not_the_overlays():
    images, analysis = head_ct()
    without = built(analysis, images, prior=no_prior("no earlier study"))
    prior = prior_without_measurements("1.2.3.4.5", None, "")
    with_prior = built(analysis, images, prior=prior)
    assert with_prior.sr.sop_instance_uid != without.sr.sop_instance_uid
    assert {k: v for k, v in uids(with_prior).items() if k != "sr"} == {
        k: v for k, v in uids(without).items() if k != "sr"
    }
    overlay_digest = overlay_inputs_digest(analysis, images, PROFILE)
    assert report_inputs_digest(overlay_digest, prior) != report_inputs_digest(overlay_digest, None)


def test_the_predecessor_is_part_of_the_sr_so_going_back_never_reuses_the_first_uid():
    images, analysis = head_ct()
    first = built(analysis, images, part="report").sr
    stricter = dataclasses.replace(
        analysis,
        findings=tuple(
            dataclasses.replace(finding, threshold=finding.threshold + 0.01)
            for finding in analysis.findings
        ),
    )
    second = built(
        stricter,
        images,
        part="report",
        predecessor=PredecessorReport(first.sop_instance_uid, first.series_instance_uid),
    ).sr
    back = built(
        analysis,
        images,
        part="report",
        predecessor=PredecessorReport(second.sop_instance_uid, second.series_instance_uid),
    ).sr
    assert len({first.sop_instance_uid, second.sop_instance_uid, back.sop_instance_uid}) == 3
    named = back.dataset.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert named.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == second.sop_instance_uid
