"""SOP classes and transfer syntaxes the node does not take, and images no model can read:
refused cleanly at negotiation, or stored and recorded "not analysable", never an error storm.

The log lines the node writes while senders keep proposing what it refuses are counted: at
most one WARNING per association, no ERROR and no traceback."""

from __future__ import annotations

import logging

from pydicom import dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation

from deployments.orthanc import free_port
from integrations.db.store import StudyStore
from tests.dicom_samples import make_instance
from tests.site import running_node

NODE_AE_TITLE = "PACSFLOW"
PRIVATE_SOP_CLASS = "1.2.826.0.1.3680043.8.498.77.1"  # a vendor's own storage class
UNKNOWN_TRANSFER_SYNTAX = "1.2.826.0.1.3680043.8.498.77.2"
MPEG2_MAIN_PROFILE = "1.2.840.10008.1.2.4.100"  # accepted as bytes, no decoder for an image
ABSTRACT_SYNTAX_NOT_SUPPORTED = 0x03
TRANSFER_SYNTAXES_NOT_SUPPORTED = 0x04
ASSOCIATIONS = 20
CHEST_RULE = {
    "name": "chest",
    "modality": ["DX"],
    "body_part": ["CHEST"],
    "analyzers": ["chest-xray"],
}


def node_records(caplog) -> list[logging.LogRecord]:
    """What the node's own threads logged (the sender runs in this process too)."""
    return [
        record
        for record in caplog.records
        if record.threadName.startswith(("AcceptorThread", "DicomConnection", "dicom-node"))
        or record.name.startswith("integrations.")
    ]


def test_unsupported_sop_class_and_transfer_syntax_are_refused_at_negotiation(
    settings_factory, caplog
):
    caplog.set_level(logging.DEBUG)
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": free_port(), "allowed_callers": ["MODALITY"]}
    )
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(PRIVATE_SOP_CLASS, ExplicitVRLittleEndian)
    ae.add_requested_context(DigitalXRayImageStorageForPresentation, UNKNOWN_TRANSFER_SYNTAX)
    only_unsupported = AE(ae_title="MODALITY")
    only_unsupported.add_requested_context(PRIVATE_SOP_CLASS, ExplicitVRLittleEndian)
    ae.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
    with running_node(settings, close_studies=False) as site:
        caplog.clear()
        for number in range(ASSOCIATIONS):
            assoc = ae.associate("127.0.0.1", site.port, ae_title=NODE_AE_TITLE)
            assert assoc.is_established
            results = {
                (context.abstract_syntax, context.transfer_syntax[0]): context.result
                for context in assoc.rejected_contexts
            }
            assert results == {
                (PRIVATE_SOP_CLASS, ExplicitVRLittleEndian): ABSTRACT_SYNTAX_NOT_SUPPORTED,
                (
                    DigitalXRayImageStorageForPresentation,
                    UNKNOWN_TRANSFER_SYNTAX,
                ): TRANSFER_SYNTAXES_NOT_SUPPORTED,
            }
            # what the node does take still goes through on the same association
            image = make_instance("unsupported", number=number + 1)
            assert assoc.send_c_store(image).Status == 0
            assoc.release()
            # nothing at all it takes: no association that could carry anything
            refused = only_unsupported.associate("127.0.0.1", site.port, ae_title=NODE_AE_TITLE)
            assert not refused.accepted_contexts
            if refused.is_established:
                refused.release()
        stored = len(StudyStore(site.database).instance_paths())
    assert stored == ASSOCIATIONS
    noisy = [r for r in node_records(caplog) if r.levelno >= logging.WARNING or r.exc_info]
    print(
        f"{2 * ASSOCIATIONS} associations with refused contexts: {len(noisy)} node WARNING+ lines"
    )
    assert all(r.levelno < logging.ERROR and not r.exc_info for r in noisy), [
        r.getMessage() for r in noisy
    ]
    assert len(noisy) <= ASSOCIATIONS, [r.getMessage() for r in noisy]


def test_image_no_model_can_decode_is_stored_and_not_analysable(
    settings_factory, demo_registry, caplog
):
    caplog.set_level(logging.WARNING)
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": free_port(), "allowed_callers": ["MODALITY"]},
        routing={"rules": [CHEST_RULE]},
    )
    image = make_instance("mpeg2-chest", size=64)
    image.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(200)])  # an MPEG-2 start code
    image["PixelData"].VR = "OB"
    image.file_meta.TransferSyntaxUID = MPEG2_MAIN_PROFILE
    sender = AE(ae_title="MODALITY")  # storescu would only offer to decompress it first
    sender.add_requested_context(DigitalXRayImageStorageForPresentation, MPEG2_MAIN_PROFILE)
    with running_node(settings, close_studies=False) as site:
        assoc = sender.associate("127.0.0.1", site.port, ae_title=NODE_AE_TITLE)
        assert assoc.is_established
        assert assoc.send_c_store(image).Status == 0
        assoc.release()
        records = StudyStore(site.database).instances(str(image.StudyInstanceUID))
    assert len(records) == 1 and records[0].transfer_syntax_uid == MPEG2_MAIN_PROFILE
    received = dcmread(records[0].path)
    result = demo_registry.get("chest-xray").analyze([received])
    assert result.status == "not_analysable"
    assert "cannot be decoded" in result.reason
    assert not result.findings
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
