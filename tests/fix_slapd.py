"""A real OpenLDAP slapd for tests, on a free loopback port, seeded with one person per
console role, one in two groups and one in no mapped group (I/O).

Recipe: /work/shared/RECIPES.md section 5 (mdb backend, memberof overlay configured before
the groups are added so ``memberOf`` is populated). The directory can be stopped and started
again on the same port to test a directory outage.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deployments.orthanc import free_port

SUFFIX = "dc=hospital,dc=test"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "adminpw"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"

# role -> the group that grants it
ROLE_GROUPS = {
    "radiologist": f"cn=radiologists,{GROUPS}",
    "emergency_physician": f"cn=emergency,{GROUPS}",
    "technologist": f"cn=technologists,{GROUPS}",
    "department_head": f"cn=radiology-heads,{GROUPS}",
    "it_admin": f"cn=pacs-admins,{GROUPS}",
}
UNMAPPED_GROUP = f"cn=cafeteria,{GROUPS}"

# user -> (display name, password, groups)
USERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "rad": ("Dr Rhea Radiologist", "radpw", (ROLE_GROUPS["radiologist"],)),
    "erdoc": ("Dr Emil Emergency", "erpw", (ROLE_GROUPS["emergency_physician"],)),
    "tech": ("Tess Technologist", "techpw", (ROLE_GROUPS["technologist"],)),
    "head": ("Prof Hal Head", "headpw", (ROLE_GROUPS["department_head"],)),
    "itadmin": ("Ivy Admin", "itpw", (ROLE_GROUPS["it_admin"],)),
    "nobody": ("Ned Nogroup", "nobodypw", (UNMAPPED_GROUP,)),
    "both": ("Dr Bo Both", "bothpw", (ROLE_GROUPS["emergency_physician"], ROLE_GROUPS["it_admin"])),
    # the escalation roster's surgeon logs in with the same ID (tests of acknowledgement)
    "surg1": ("Dr Sam Surgeon", "surg1pw", (ROLE_GROUPS["emergency_physician"],)),
}


def _make_certificates(folder: Path) -> None:
    """A test CA and a server certificate for 127.0.0.1 (StartTLS and ldaps:// tests)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=pacsflow test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (folder / "server.ext").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    )
    (folder / "server.key").chmod(0o600)


def _conf(folder: Path) -> str:
    return f"""include   /etc/ldap/schema/core.schema
include   /etc/ldap/schema/cosine.schema
include   /etc/ldap/schema/inetorgperson.schema
include   /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile   {folder}/slapd.pid
TLSCACertificateFile {folder}/ca.pem
TLSCertificateFile {folder}/server.pem
TLSCertificateKeyFile {folder}/server.key
database  mdb
maxsize   104857600
suffix    "{SUFFIX}"
rootdn    "{ADMIN_DN}"
rootpw    {ADMIN_PASSWORD}
directory {folder}/data
index     objectClass eq
overlay   memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
"""


def _seed() -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: hospital\no: Hospital",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups",
    ]
    members: dict[str, list[str]] = {}
    for uid, (name, password, groups) in USERS.items():
        surname = name.split()[-1]
        entries.append(
            f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {name}\n"
            f"sn: {surname}\nuserPassword: {password}"
        )
        for group in groups:
            members.setdefault(group, []).append(f"uid={uid},{PEOPLE}")
    for group, dns in members.items():
        cn = group.split(",")[0].split("=")[1]
        entries.append(
            f"dn: {group}\nobjectClass: groupOfNames\ncn: {cn}\n"
            + "\n".join(f"member: {dn}" for dn in dns)
        )
    return "\n\n".join(entries) + "\n"


@dataclass
class Slapd:
    folder: Path
    port: int
    tls_port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "/usr/sbin/slapd",
                "-d",
                "0",  # foreground: the fixture owns the process
                "-f",
                str(self.folder / "slapd.conf"),
                "-h",
                f"{self.url}/ {self.ldaps_url}/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["ldapsearch", "-x", "-H", self.url, "-b", "", "-s", "base"],
                capture_output=True,
            )
            if probe.returncode == 0:
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.process.returncode}")
            time.sleep(0.05)
        raise RuntimeError("slapd did not answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def ldap_settings(self, **overrides: object) -> dict[str, object]:
        return {
            "url": self.url,
            "user_dn_template": f"uid={{username}},{PEOPLE}",
            "group_search_base": GROUPS,
            "group_cache_seconds": 0,
            **overrides,
        }

    @staticmethod
    def rbac_settings() -> dict[str, list[str]]:
        return {role: [group] for role, group in ROLE_GROUPS.items()}


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A running slapd with the people above; restarted for a test that stopped it."""
    if shutil.which("/usr/sbin/slapd") is None:
        pytest.fail("slapd is not installed (make setup installs slapd and ldap-utils)")
    folder = tmp_path_factory.mktemp("slapd")
    (folder / "data").mkdir()
    _make_certificates(folder)
    (folder / "slapd.conf").write_text(_conf(folder))
    (folder / "seed.ldif").write_text(_seed())
    server = Slapd(folder, free_port(), free_port())
    server.start()
    subprocess.run(
        [
            "ldapadd",
            "-x",
            "-H",
            server.url,
            "-D",
            ADMIN_DN,
            "-w",
            ADMIN_PASSWORD,
            "-f",
            str(folder / "seed.ldif"),
        ],
        check=True,
        capture_output=True,
    )
    yield server
    server.stop()


@pytest.fixture
def running_slapd(slapd: Slapd) -> Slapd:
    """The session's slapd, started again if an earlier test stopped it."""
    if slapd.process is None:
        slapd.start()
    return slapd
