"""``pacsflow acceptance run|verify|keygen``: the go-live acceptance suite (I/O).

``run`` sends the ten generated cases (or ``--studies DIR --truth CSV``) through the running
site and writes acceptance.json (signed), acceptance.html and acceptance.pdf; it exits 0
when every step passed, 1 otherwise (the record says FAILED or BLOCKED). ``verify FILE``
exits 0 for an intact record and 1 for a tampered one. ``keygen FILE`` writes the Ed25519
key ``[acceptance] signing_key_file`` names. The same run is the ``acceptance-suite``
deployment in the Prefect UI (flows/acceptance_suite.py).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from integrations.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "acceptance", help="go-live acceptance suite: run it, verify a record, make its key"
    )
    actions = parser.add_subparsers(dest="acceptance_command", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="send the acceptance studies through the site")
    run.add_argument("--output", type=Path, help="folder for the record (default: a new one)")
    run.add_argument("--studies", type=Path, help="a site's own de-identified studies")
    run.add_argument("--truth", type=Path, help="their ground truth (CSV, see the docs)")
    run.add_argument("--cases", default="", help="only these cases, comma-separated (e.g. A01,A04)")
    run.set_defaults(handler=run_command)
    verify = actions.add_parser("verify", help="check a record's signature and renderings")
    verify.add_argument("file", type=Path, help="acceptance.json, .html or .pdf")
    verify.add_argument(
        "--public-key",
        type=Path,
        help="PEM public key (default: the public half of [acceptance] signing_key_file)",
    )
    verify.set_defaults(handler=verify_command)
    keygen = actions.add_parser("keygen", help="write a new Ed25519 signing key (PEM)")
    keygen.add_argument("file", type=Path)
    keygen.set_defaults(handler=keygen_command)


def run_command(args: argparse.Namespace) -> int:
    from integrations.acceptance.suite import run_acceptance

    settings = load_settings(args.config)
    only = [name.strip() for name in args.cases.split(",") if name.strip()]
    outcome = run_acceptance(
        settings,
        output_dir=args.output,
        studies_dir=args.studies,
        truth_csv=args.truth,
        only=only,
        progress=print,
    )
    record = outcome.record
    for case in record["cases"]:
        failed = [step["step"] for step in case["steps"] if not step["passed"]]
        print(f"{case['case']}: {'pass' if not failed else 'FAIL ' + ', '.join(failed)}")
    print(f"go-live: {record['go_live']}")
    print(f"record: {outcome.json_path} (signed), {outcome.html_path}, {outcome.pdf_path}")
    return 0 if record["verdict"] == "PASSED" else 1


def verify_command(args: argparse.Namespace) -> int:
    from integrations.acceptance.report import verify_file

    pem = None
    if args.public_key is not None:
        pem = args.public_key.read_bytes()
    else:
        settings = load_settings(args.config)
        key_file = settings.acceptance.signing_key_file
        if key_file and Path(key_file).is_file():
            pem = Path(key_file).read_bytes()
        else:
            print("no key configured: checking against the key the record carries (integrity only)")
    verification = verify_file(args.file, pem)
    status = "intact" if verification.intact else "TAMPERED"
    print(f"{args.file}: {status}: {verification.reason} (key {verification.key_id or '-'})")
    return 0 if verification.intact else 1


def keygen_command(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from integrations.acceptance.record import key_id

    if args.file.exists():
        print(f"{args.file} exists: refusing to overwrite a signing key")
        return 1
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    args.file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    print(f"wrote {args.file} (key {key_id(key.public_key())}); set [acceptance] signing_key_file")
    return 0
