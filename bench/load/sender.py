"""One modality of the load benchmark: C-STOREs over one association, each timed (I/O).

Usage: ``python -m bench.load.sender ct|cr --port P --called AE --out timings.json ...``.
``ct``: one study of ``--count`` 512x512 16-bit CT slices (about 512 KB each) on one
association, sent by dcmtk's ``storescu`` from files (a pynetdicom requestor sending 512 KB
datasets stalled for its whole DIMSE timeout now and then, with dcmtk's storescp and with
the node alike, so the C requestor is used; its ``-v`` lines are timestamped as they come). ``cr``: ``--count`` chest X-ray studies (the chest phantom, every third one with
a pneumothorax: Critical), one association each, ``--parallel`` at a time. The images are made
in memory before the clock starts and the process waits for ``--start-at`` (a wall-clock
time), so every sender begins together. Writes one JSON file: per C-STORE the response time
(seconds) and its status, the bytes sent, the first send and the last response (wall clock).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from integrations.dicom.uids import derived_uid

CT_SIZE = 512
# A receiver that has not answered one C-STORE by then has stalled: the sender aborts and
# the run reports what was stored.
DIMSE_TIMEOUT_SECONDS = 60


def ct_template(study_key: str) -> Dataset:
    """A head CT slice as scanners send it: 512x512, 16 bit, one study per ``study_key``."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.StudyInstanceUID = derived_uid("bench-load-study", study_key)
    ds.SeriesInstanceUID = derived_uid("bench-load-series", study_key)
    ds.PatientID = f"LOAD-{study_key}"
    ds.PatientName = f"Load^{study_key}"
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "O"
    ds.AccessionNumber = f"L{study_key}"[:16]
    ds.StudyDate, ds.StudyTime = "20261201", "120000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.Modality = "CT"
    ds.BodyPartExamined = "HEAD"
    ds.SeriesNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.FrameOfReferenceUID = derived_uid("bench-load-frame", study_key)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 1.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = CT_SIZE
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.WindowCenter, ds.WindowWidth = 40, 80
    rng = np.random.default_rng(abs(hash(study_key)) % 2**32)
    ds.PixelData = rng.integers(0, 2048, (CT_SIZE, CT_SIZE), dtype=np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return ds


def ct_slices(study_key: str, count: int) -> Iterator[Dataset]:
    """The study's slices, one after the other: one dataset changed in place per slice (a
    thousand copies of 512 KB would cost the sender more than the send)."""
    ds = ct_template(study_key)
    for number in range(1, count + 1):
        ds.SOPInstanceUID = derived_uid("bench-load-instance", study_key, number)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        ds.ImagePositionPatient = [-128.0, -128.0, float(number)]
        ds.SliceLocation = float(number)
        yield ds


def write_ct_files(study_key: str, count: int, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in ct_slices(study_key, count):
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def send_with_storescu(
    port: int, called: str, calling: str, files: list[Path], study: str, timings: Timings
) -> None:
    """storescu -v over one association; each C-STORE timed from its "Sending file" line to
    its "Received Store Response" line."""
    process = subprocess.Popen(
        [
            "storescu",
            "-v",
            "-aet",
            calling,
            "-aec",
            called,
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        env={**os.environ, "TCP_NODELAY": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert process.stdout is not None
    sizes = {str(path): path.stat().st_size for path in files}
    started = 0.0
    size = 0
    for line in process.stdout:
        now = time.perf_counter()
        if "Sending file: " in line:
            started = now
            size = sizes.get(line.split("Sending file: ", 1)[1].strip(), 0)
        elif "Received Store Response" in line:
            status = 0 if "(Success)" in line else -1
            timings.add(study, now - started, status, size, time.time())
    if process.wait() != 0:
        timings.stalled = True


def cr_studies(count: int, first_seed: int) -> list[list[Dataset]]:
    from models.phantoms.chest import chest_xray_study

    studies = []
    for index in range(count):
        findings = ["Pneumothorax"] if index % 3 == 0 else []
        study = chest_xray_study(
            first_seed + index, findings, accession_number=f"LCR{index:04d}", modality="CR"
        )
        studies.append(list(study.datasets))
    return studies


class Timings:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[dict[str, object]] = []
        self.bytes_sent = 0
        self.stalled = False  # the receiver stopped answering and the association was aborted

    def add(self, study: str, seconds: float, status: int, size: int, ended: float) -> None:
        with self.lock:
            self.records.append(
                {"study": study, "seconds": seconds, "status": status, "ended": ended}
            )
            self.bytes_sent += size


def encoded_size(ds: Dataset) -> int:
    return len(ds.PixelData) + 2048  # the header is small next to the pixels


def send_study(
    port: int,
    called: str,
    calling: str,
    sop_classes: set[str],
    datasets: Iterable[Dataset],
    timings: Timings,
) -> None:
    ae = AE(ae_title=calling)
    ae.maximum_pdu_size = 0  # no limit on what we receive; we send what the peer allows
    for sop_class in sorted(sop_classes):
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    ae.dimse_timeout = ae.network_timeout = DIMSE_TIMEOUT_SECONDS
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        raise RuntimeError(f"{calling}: association to {called} not established")
    try:
        for ds in datasets:
            if not assoc.is_established:
                timings.stalled = True
                return
            started = time.perf_counter()
            status = assoc.send_c_store(ds)
            seconds = time.perf_counter() - started
            code = int(getattr(status, "Status", -1)) if status else -1
            timings.add(str(ds.StudyInstanceUID), seconds, code, encoded_size(ds), time.time())
    finally:
        if assoc.is_established:
            assoc.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("ct", "cr"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--called", required=True)
    parser.add_argument("--calling", default="LOADGEN")
    parser.add_argument("--study-key", default="ct-1")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--first-seed", type=int, default=7000)
    parser.add_argument("--go", type=Path, required=True, help="start once this file exists")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    _config.LOG_HANDLER_LEVEL = "none"

    cr = cr_studies(args.count, args.first_seed) if args.kind == "cr" else []
    ct_files = (
        write_ct_files(args.study_key, args.count, args.out.with_suffix(".files"))
        if args.kind == "ct"
        else []
    )
    uids = [str(study[0].StudyInstanceUID) for study in cr] or [
        str(ct_template(args.study_key).StudyInstanceUID)
    ]
    args.out.with_suffix(".ready").write_text("ready")
    while not args.go.exists():
        time.sleep(0.005)
    timings = Timings()
    first_send = time.time()
    if args.kind == "ct":
        send_with_storescu(args.port, args.called, args.calling, ct_files, uids[0], timings)
    else:
        with ThreadPoolExecutor(args.parallel) as pool:
            futures = [
                pool.submit(
                    send_study,
                    args.port,
                    args.called,
                    args.calling,
                    {str(ds.SOPClassUID) for ds in study},
                    study,
                    timings,
                )
                for study in cr
            ]
            for future in futures:
                future.result()
    last_response = time.time()
    args.out.write_text(
        json.dumps(
            {
                "kind": args.kind,
                "first_send": first_send,
                "last_response": last_response,
                "bytes_sent": timings.bytes_sent,
                "stalled": timings.stalled,
                "stores": timings.records,
                "studies": uids,
                "critical": [
                    uid for index, uid in enumerate(uids) if args.kind == "cr" and index % 3 == 0
                ],
            }
        )
    )


if __name__ == "__main__":
    main()
