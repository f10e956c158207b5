#!/usr/bin/env bash
# Debian packages pacsflow's tests and demo use: the real peers (Orthanc, dcmtk, dicom3tools,
# slapd), build dependencies of python-ldap, xmlsec1 for SAML signatures, and headless Chromium
# for browser tests.
# Installs only what is missing, only as root; otherwise says what to install and goes on.
set -euo pipefail

PACKAGES=(orthanc dcmtk dicom3tools slapd ldap-utils libldap2-dev libsasl2-dev xmlsec1 chromium postgresql postgresql-contrib)

missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "pacsflow setup: please install these Debian packages: ${missing[*]}" >&2
    echo "pacsflow setup: (run 'make setup' as root to install them automatically)" >&2
    exit 0
fi

echo "pacsflow setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
