"""Write the acceptance record: acceptance.html, acceptance.pdf and the signed acceptance.json
(I/O: files and a headless Chromium).

The HTML is rendered from the record with Jinja2 (autoescaped); the PDF is that page printed
by Debian's Chromium (``--headless --print-to-pdf``), so the two always show the same thing.
The JSON holds the record, the SHA-256 of both renderings, and the Ed25519 signature over
all of it; :func:`verify_file` checks any of the three files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from integrations.acceptance.record import (
    Verification,
    file_digest,
    key_id,
    load_private_key,
    load_public_key,
    sign_record,
    verify_document,
)
from integrations.errors import ConfigError

JSON_NAME = "acceptance.json"
HTML_NAME = "acceptance.html"
PDF_NAME = "acceptance.pdf"


def render_html(record: dict[str, Any], signing_key_id: str) -> str:
    environment = Environment(
        loader=PackageLoader("integrations.acceptance", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    return environment.get_template("acceptance.html.j2").render(
        record=record, key_id=signing_key_id
    )


def print_pdf(html_path: Path, pdf_path: Path, chromium: str, timeout: float = 120.0) -> None:
    """Print ``html_path`` to ``pdf_path`` with headless Chromium; ConfigError when absent."""
    executable = shutil.which(chromium) or (chromium if Path(chromium).is_file() else None)
    if executable is None:
        raise ConfigError(
            f"[acceptance] chromium {chromium!r} not found: apt-get install chromium"
            " (make setup does), or point chromium at the browser"
        )
    with tempfile.TemporaryDirectory(prefix="pacsflow-chromium-") as profile:
        done = subprocess.run(
            [
                executable,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-pdf-header-footer",
                f"--user-data-dir={profile}",
                f"--print-to-pdf={pdf_path}",
                html_path.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0 or not pdf_path.is_file():
        raise ConfigError(f"Chromium could not print the record: {done.stderr[-500:]}")


@dataclass(frozen=True)
class WrittenRecord:
    json_path: Path
    html_path: Path
    pdf_path: Path
    key_id: str


def write_record(
    record: dict[str, Any], output_dir: Path, signing_key_file: Path, chromium: str
) -> WrittenRecord:
    """Render, print, digest and sign the record into ``output_dir``."""
    private_key = load_private_key(signing_key_file.read_bytes())
    identity = key_id(private_key.public_key())
    output_dir.mkdir(parents=True, exist_ok=True)
    html_path = output_dir / HTML_NAME
    pdf_path = output_dir / PDF_NAME
    html_path.write_text(render_html(record, identity), encoding="utf-8")
    print_pdf(html_path, pdf_path, chromium)
    signed_record = {
        **record,
        "files": {
            HTML_NAME: file_digest(html_path.read_bytes()),
            PDF_NAME: file_digest(pdf_path.read_bytes()),
        },
    }
    json_path = output_dir / JSON_NAME
    document = sign_record(signed_record, private_key)
    json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return WrittenRecord(json_path, html_path, pdf_path, identity)


def verify_file(path: Path, public_key_pem: bytes | None) -> Verification:
    """Check a record file: the signed JSON itself, or an HTML/PDF against the JSON beside it
    (every rendering the JSON lists that is present must match its digest)."""
    json_path = path if path.suffix == ".json" else path.with_name(JSON_NAME)
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Verification(False, f"{json_path} not found")
    except (OSError, ValueError) as error:
        return Verification(False, f"{json_path} unreadable: {error}")
    public_key = load_public_key(public_key_pem) if public_key_pem else None
    verification = verify_document(document, public_key)
    if not verification.intact:
        return verification
    listed = document["record"].get("files", {})
    if path != json_path and path.name not in listed:
        return Verification(False, f"{path.name} is not part of the signed record")
    for name, digest in listed.items():
        rendering = json_path.with_name(name)
        if rendering.is_file() and file_digest(rendering.read_bytes()) != digest:
            return Verification(
                False, f"{name} differs from the signed record", verification.key_id
            )
        if not rendering.is_file() and rendering == path:
            return Verification(False, f"{name} not found", verification.key_id)
    return verification
