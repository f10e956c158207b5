"""How a peer process runs: serve until SIGTERM, with a ``ready`` file while it listens."""

from __future__ import annotations

import os
import signal
import socketserver
import threading
from pathlib import Path


def serve_until_terminated(server: socketserver.BaseServer, folder: Path) -> int:
    """Serve ``server``; ``folder/ready`` (holding the pid) exists while it accepts."""
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    (folder / "ready").write_text(str(os.getpid()))
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        (folder / "ready").unlink(missing_ok=True)
    return 0
