"""What DICOM TLS costs: storescu sends N images over plain TCP and over TLS, to the node and
to dcmtk storescp, in one run (I/O).

Usage: ``python -m bench.tls [--images 300] [--repeats 3]``. The numbers to watch are the
ratios TLS/plain for the node and for storescp (the reference, measured the same way in the
same run): TLS should cost the node no more than it costs storescp. Both sides use dcmtk's
default TLS profile (non-downgrading BCP 195) with client certificates from a throwaway CA.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import DCMTK_ENV, REPO_ROOT, node_process, scratch_database
from bench.ingest import make_images, send
from deployments.orthanc import free_port
from tests.dicom_samples import CT_IMAGE, make_instance, write
from tests.tls_certs import Pki, make_pki


def tls_options(pki: Pki, client: bool) -> list[str]:
    identity = pki.modality if client else pki.node
    return ["+tls", str(identity.key), str(identity.cert), "+cf", str(pki.ca)]


def wait_for_tls_echo(port: int, called: str, tls: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = subprocess.run(
            ["echoscu", "-aet", "BENCH", "-aec", called, *tls, "127.0.0.1", str(port)],
            env=DCMTK_ENV,
            capture_output=True,
        )
        if done.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{called} did not answer C-ECHO over TLS on port {port}")


def storescp_rates(files: list[Path], work: Path, pki: Pki, tls: bool) -> float:
    out = work / f"storescp-{tls}"
    out.mkdir()
    port = free_port()
    server = ["storescp", "-aet", "STORESCP", "-od", str(out)]
    server += tls_options(pki, client=False) if tls else []
    process = subprocess.Popen(
        [*server, str(port)],
        cwd=REPO_ROOT,
        env=DCMTK_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = tls_options(pki, client=True) if tls else []
    try:
        wait_for_tls_echo(port, "STORESCP", client)
        return len(files) / send(files, port, "STORESCP", client)
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(out)


def node_rates(plain: list[Path], secured: list[Path], work: Path, pki: Pki) -> tuple[float, float]:
    with scratch_database() as database_url:
        storage = work / "node" / "storage"
        storage.mkdir(parents=True)
        tls_port = free_port()
        with node_process(
            storage,
            database_url,
            PACSFLOW_NODE__TLS_PORT=str(tls_port),
            PACSFLOW_NODE__TLS_CERT=str(pki.node.cert),
            PACSFLOW_NODE__TLS_KEY=str(pki.node.key),
            PACSFLOW_NODE__TLS_CA=str(pki.ca),
        ) as port:
            client = tls_options(pki, client=True)
            wait_for_tls_echo(tls_port, "PACSFLOW", client)
            plain_rate = len(plain) / send(plain, port, "PACSFLOW", [])
            tls_rate = len(secured) / send(secured, tls_port, "PACSFLOW", client)
        shutil.rmtree(storage.parent)
    return plain_rate, tls_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pacsflow-bench-tls-") as scratch:
        work = Path(scratch)
        pki = make_pki(work / "pki")
        plain_files = make_images(work / "plain", args.images)
        tls_files = [
            write(
                make_instance(
                    "bench-tls",
                    number=i,
                    modality="CT",
                    body_part="HEAD",
                    sop_class_uid=CT_IMAGE,
                    size=128,
                ),
                work / "tls",
            )
            for i in range(1, args.images + 1)
        ]
        size_kb = sum(f.stat().st_size for f in plain_files) / len(plain_files) / 1024
        print(
            f"{args.images} images, {size_kb:.1f} KB each, storescu -> receiver, {args.repeats} repeats"
        )
        reference = {False: [], True: []}
        node = {False: [], True: []}
        for _ in range(args.repeats):
            for tls in (False, True):
                reference[tls].append(storescp_rates(plain_files, work, pki, tls))
            plain_rate, tls_rate = node_rates(plain_files, tls_files, work, pki)
            node[False].append(plain_rate)
            node[True].append(tls_rate)
        for name, rates in (("dcmtk storescp", reference), ("pacsflow node ", node)):
            plain_median, tls_median = (statistics.median(rates[tls]) for tls in (False, True))
            print(
                f"{name}: plain {plain_median:7.1f} images/s, TLS {tls_median:7.1f} images/s,"
                f" TLS/plain {tls_median / plain_median:.2f}"
                f"  {[round(r) for r in rates[False]]} {[round(r) for r in rates[True]]}"
            )


if __name__ == "__main__":
    main()
