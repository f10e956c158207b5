"""A stock pynetdicom storage SCP that writes the received bytes, the recipe's reference (I/O).

Run by ``bench.ingest`` as a second reference beside dcmtk's storescp: it shows what pynetdicom
itself costs per instance, before anything pacsflow adds.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]


def main() -> None:
    port, out = int(sys.argv[1]), Path(sys.argv[2])
    _config.LOG_HANDLER_LEVEL = "none"

    def store(event: evt.Event) -> int:
        with open(out / f"{event.request.AffectedSOPInstanceUID}.dcm", "wb") as handle:
            handle.write(event.encoded_dataset())
        return 0x0000

    ae = AE(ae_title="PLAINSCP")
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.start_server(
        ("127.0.0.1", port),
        block=True,
        evt_handlers=[(evt.EVT_C_STORE, store), (evt.EVT_C_ECHO, lambda e: 0)],
    )


if __name__ == "__main__":
    main()
