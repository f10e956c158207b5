"""Ingest benchmark: dcmtk storescu sends the same N images to the node and to dcmtk storescp.

Usage: ``python -m bench.ingest [--images 500] [--repeats 3] [--size 128]``; ``--size 512``
sends 512x512x16-bit CT slices (about 512 KB each), the load benchmark's CT. Both receivers run in the same
run on the same machine; the ratio node/storescp is the number to watch (target >= 0.5).
The node stores each instance durably (fsync + rename) and commits its PostgreSQL row before
it answers; storescp writes files without fsync. ``--no-fsync`` shows the node without it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import DCMTK_ENV, REPO_ROOT, node_process, scratch_database, wait_for_echo
from deployments.orthanc import free_port
from tests.dicom_samples import CT_IMAGE, make_instance, write


def make_images(folder: Path, count: int, size: int = 128) -> list[Path]:
    """``count`` CT images of ``size`` x ``size`` x 16 bit (128: about 33 KB each), one study."""
    return [
        write(
            make_instance(
                "bench-ingest",
                number=i,
                modality="CT",
                body_part="HEAD",
                sop_class_uid=CT_IMAGE,
                size=size,
            ),
            folder,
        )
        for i in range(1, count + 1)
    ]


def send(files: list[Path], port: int, called: str, options: Sequence[str] = ()) -> float:
    """Seconds dcmtk's storescu takes to send ``files`` on one association (``options``:
    e.g. its TLS ones)."""
    started = time.perf_counter()
    done = subprocess.run(
        ["storescu", "-aet", "BENCH", "-aec", called, *options, "127.0.0.1", str(port)]
        + [str(path) for path in files],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"storescu to {called} failed: {done.stderr[-500:]}")
    return elapsed


def reference_rate(
    files: list[Path],
    work: Path,
    repeats: int,
    called: str,
    command: Callable[[int, Path], list[str]],
) -> list[float]:
    """images/s of a reference receiver started by ``command(port, out_dir)``, per repeat."""
    rates = []
    for attempt in range(repeats):
        out = work / f"{called.lower()}-{attempt}"
        out.mkdir()
        port = free_port()
        process = subprocess.Popen(
            command(port, out),
            cwd=REPO_ROOT,
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_echo(port, called, process)
            rates.append(len(files) / send(files, port, called))
        finally:
            process.terminate()
            process.wait(10)
        shutil.rmtree(out)
    return rates


def storescp(port: int, out: Path) -> list[str]:
    return ["storescp", "-aet", "STORESCP", "-od", str(out), str(port)]


def plain_pynetdicom(port: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "bench.plain_scp", str(port), str(out)]


def node_rate(files: list[Path], work: Path, repeats: int, fsync: bool) -> list[float]:
    rates = []
    for attempt in range(repeats):
        with scratch_database() as database_url:
            storage = work / f"node-{attempt}-{fsync}" / "storage"
            storage.mkdir(parents=True)
            with node_process(
                storage, database_url, PACSFLOW_NODE__FSYNC=str(fsync).lower()
            ) as port:
                rates.append(len(files) / send(files, port, "PACSFLOW"))
        shutil.rmtree(storage.parent)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=128, help="rows = columns of each image")
    parser.add_argument(
        "--no-fsync", action="store_true", help="also measure the node without fsync"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pacsflow-bench-") as scratch:
        work = Path(scratch)
        files = make_images(work / "images", args.images, args.size)
        size_kb = sum(f.stat().st_size for f in files) / len(files) / 1024
        megabytes = sum(f.stat().st_size for f in files) / 1_000_000 / len(files)
        print(
            f"{len(files)} images, {size_kb:.1f} KB each, storescu -> receiver, {args.repeats} repeats"
        )
        reference = reference_rate(files, work, args.repeats, "STORESCP", storescp)
        plain = reference_rate(files, work, args.repeats, "PLAINSCP", plain_pynetdicom)
        node = node_rate(files, work, args.repeats, fsync=True)
        print(
            f"dcmtk storescp (no fsync, no database)  : {statistics.median(reference):7.1f} images/s "
            f"{statistics.median(reference) * megabytes:6.0f} MB/s  {[round(r) for r in reference]}"
        )
        print(
            f"stock pynetdicom SCP writing raw bytes  : {statistics.median(plain):7.1f} images/s "
            f"{statistics.median(plain) * megabytes:6.0f} MB/s  {[round(r) for r in plain]}"
        )
        print(
            f"pacsflow node (fsync + PostgreSQL row)  : {statistics.median(node):7.1f} images/s "
            f"{statistics.median(node) * megabytes:6.0f} MB/s  {[round(r) for r in node]}"
        )
        print(
            f"ratio node/storescp : {statistics.median(node) / statistics.median(reference):.2f}  (target >= 0.5)"
        )
        print(
            f"ratio node/stock pynetdicom : {statistics.median(node) / statistics.median(plain):.2f}"
        )
        if args.no_fsync:
            unsynced = node_rate(files, work, args.repeats, fsync=False)
            print(f"pacsflow node, no fsync: {statistics.median(unsynced):7.1f} images/s")


if __name__ == "__main__":
    main()
