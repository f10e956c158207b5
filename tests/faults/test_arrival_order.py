"""Instances arriving in the orders scanners and PACS really send them, through dcmtk
``storescu`` into the node with its study closer running: series out of order and shuffled,
two studies interleaved on one association, one study over three parallel associations.

Each study is grouped right (its own series and instances, nothing from another study), closes
once with everything in it, and the slices the analyzers get come out in anatomical order
whatever order they arrived in (and whatever their Instance Numbers say)."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

from pydicom import dcmread

from deployments.orthanc import free_port
from integrations.db.store import StudyStore
from models.preprocess import decode_frames, sort_slices
from tests.fix_dcmtk import DCMTK_ENV
from tests.fix_hl7 import wait_until
from tests.site import running_node
from tests.unit.results import synthetic

NODE_AE_TITLE = "PACSFLOW"
HEAD_RULE = {
    "name": "head",
    "modality": ["CT"],
    "body_part": ["HEAD"],
    "analyzers": ["head-ct-ich"],
}


def ct_study(
    folder: Path, key: str, slices: int, *, feet_first: bool = False
) -> dict[str, list[Path]]:
    """Two axial series of one study (files per series UID). Series 2 is the same volume
    reconstructed again; with ``feet_first`` the Instance Numbers run against the position."""
    files: dict[str, list[Path]] = {}
    for number, suffix in ((2, ""), (3, "-recon")):
        datasets, _ = synthetic.ct_series(slices=slices, study_key=key, shape=(32, 32))
        series_uid = f"{datasets[0].SeriesInstanceUID}.{number}"
        for index, ds in enumerate(datasets):
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = number
            ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{number}"
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            if feet_first:
                ds.InstanceNumber = slices - index
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for ds in datasets:
            path = folder / f"{key}{suffix}-{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
        files[series_uid] = paths
    return files


def storescu_process(port: int, files: list[Path]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["storescu", "-aet", "MODALITY", "-aec", NODE_AE_TITLE, "127.0.0.1", str(port)]
        + [str(path) for path in files],
        env=DCMTK_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def send(port: int, *batches: list[Path]) -> None:
    """Each batch on its own association, all at once; every one must succeed."""
    processes = [storescu_process(port, batch) for batch in batches]
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output


def sop_uids(paths: list[Path]) -> set[str]:
    return {str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in paths}


def study_uid_of(files: dict[str, list[Path]]) -> str:
    return str(dcmread(next(iter(files.values()))[0], stop_before_pixels=True).StudyInstanceUID)


def test_shuffled_interleaved_and_parallel_arrivals_group_and_order_right(
    settings_factory, tmp_path
):
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": free_port(), "allowed_callers": ["MODALITY"]},
        study={"quiet_seconds": 3.0, "poll_seconds": 0.1},
        routing={"rules": [HEAD_RULE]},
    )
    shuffle = random.Random(14)
    studies = {
        "shuffled": ct_study(tmp_path / "a", "order-shuffled", 24, feet_first=True),
        "interleaved-1": ct_study(tmp_path / "b", "order-interleaved-1", 12),
        "interleaved-2": ct_study(tmp_path / "c", "order-interleaved-2", 12, feet_first=True),
        "parallel": ct_study(tmp_path / "d", "order-parallel", 30),
    }
    # series out of order, slices shuffled within and across the two series
    shuffled = [path for paths in reversed(studies["shuffled"].values()) for path in paths]
    shuffle.shuffle(shuffled)
    # two studies alternating on one association
    first = [p for paths in studies["interleaved-1"].values() for p in paths]
    second = [p for paths in studies["interleaved-2"].values() for p in paths]
    interleaved = [path for pair in zip(first, second, strict=True) for path in pair]
    # one study over three associations at once, each a shuffled third
    parallel = [p for paths in studies["parallel"].values() for p in paths]
    shuffle.shuffle(parallel)
    thirds = [parallel[index::3] for index in range(3)]

    with running_node(settings) as site:
        send(site.port, shuffled, interleaved)
        send(site.port, *thirds)
        store = StudyStore(site.database)
        uids = {name: study_uid_of(files) for name, files in studies.items()}
        wait_until(
            lambda: all(_state(site, uid) == "queued" for uid in uids.values()),
            60,
            "every study closed and queued",
        )
        with site.database.connection() as conn:
            dispatch = conn.execute(
                "SELECT study_instance_uid, generation, count(*) AS n FROM dispatch"
                " GROUP BY study_instance_uid, generation"
            ).fetchall()
        assert sorted(
            (row["study_instance_uid"], row["generation"], row["n"]) for row in dispatch
        ) == sorted((uid, 1, 1) for uid in uids.values())
        for name, files in studies.items():
            uid = uids[name]
            records = store.instances(uid)
            got: dict[str, set[str]] = {}
            for record in records:
                assert record.study_instance_uid == uid
                got.setdefault(record.series_instance_uid, set()).add(record.sop_instance_uid)
            assert got == {series: sop_uids(paths) for series, paths in files.items()}, name
            for series in files:
                datasets = [dcmread(r.path) for r in store.instances(uid, [series])]
                stack = sort_slices([f for ds in datasets for f in decode_frames(ds)])
                positions = [frame.position[2] for frame in stack.frames]  # type: ignore[index]
                assert positions == sorted(positions) and len(set(positions)) == len(positions)
                assert len(positions) == len(files[series]), (name, series)


def _state(site, study_instance_uid: str) -> str | None:
    with site.database.connection() as conn:
        row = conn.execute(
            "SELECT state FROM studies WHERE study_instance_uid = %s", (study_instance_uid,)
        ).fetchone()
    return None if row is None else row["state"]
