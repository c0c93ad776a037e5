"""The C2PA signing identity: the development chain `make setup` makes, and a production pair's checks."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from editing.provenance.certificates import (
    DOCUMENT_SIGNING_OID,
    SigningConfigError,
    ensure_dev_chain,
    load_signing_identity,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_ensure_dev_is_idempotent_and_keeps_the_key_private(tmp_path: Path) -> None:
    assert ensure_dev_chain(tmp_path / "certs") is True
    files = {path.name: path.read_bytes() for path in (tmp_path / "certs").iterdir()}

    assert ensure_dev_chain(tmp_path / "certs") is False

    assert {path.name: path.read_bytes() for path in (tmp_path / "certs").iterdir()} == files
    assert set(files) == {"root.pem", "chain.pem", "signer.key"}
    assert (tmp_path / "certs" / "signer.key").stat().st_mode & 0o077 == 0
    identity = load_signing_identity(
        tmp_path / "certs" / "chain.pem", key_path=tmp_path / "certs" / "signer.key"
    )
    assert identity.algorithm == "es256"
    assert identity.chain_pem.count(b"BEGIN CERTIFICATE") == 2  # leaf and intermediate, not the root
    assert b"PRIVATE KEY" not in repr(identity).encode()


def test_ensure_dev_remakes_a_chain_that_is_about_to_expire_or_broken(tmp_path: Path) -> None:
    ensure_dev_chain(tmp_path)
    first = (tmp_path / "chain.pem").read_bytes()

    next_year = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=380)
    assert ensure_dev_chain(tmp_path, now=next_year) is True
    assert (tmp_path / "chain.pem").read_bytes() != first

    (tmp_path / "signer.key").write_text("not a key")
    assert ensure_dev_chain(tmp_path) is True
    load_signing_identity(tmp_path / "chain.pem", key_path=tmp_path / "signer.key")


def test_the_make_setup_command_creates_then_keeps_the_chain(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "editing.provenance.certificates", "ensure-dev", str(tmp_path / "certs")]

    first = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    second = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=True)

    assert first.stdout.startswith("wrote") and second.stdout.startswith("kept")


def test_the_key_can_come_from_an_environment_variable_holding_the_pem(tmp_path: Path) -> None:
    ensure_dev_chain(tmp_path)
    pem = (tmp_path / "signer.key").read_text()

    from_variable = load_signing_identity(tmp_path / "chain.pem", key_pem=pem)
    # Platforms that cannot hold multi-line values pass the PEM with literal \n.
    escaped = load_signing_identity(tmp_path / "chain.pem", key_pem=pem.replace("\n", "\\n"))

    assert from_variable.key_pem == escaped.key_pem
    assert from_variable.chain_pem == (tmp_path / "chain.pem").read_bytes()


def test_a_misconfigured_production_pair_is_refused_with_a_reason_and_no_key_material(tmp_path: Path) -> None:
    ensure_dev_chain(tmp_path)
    chain, key = tmp_path / "chain.pem", tmp_path / "signer.key"
    other_key = tmp_path / "other.key"
    other_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    garbage = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"
    cases = [
        (
            {"chain_path": tmp_path / "missing.pem", "key_path": key},
            "LIKENESS_C2PA_CERT_CHAIN names .* does not exist",
        ),
        ({"chain_path": chain}, "exactly one of LIKENESS_C2PA_KEY_FILE"),
        ({"chain_path": chain, "key_path": key, "key_pem": key.read_text()}, "exactly one of"),
        ({"chain_path": chain, "key_path": tmp_path / "nope.key"}, "LIKENESS_C2PA_KEY_FILE names"),
        (
            {"chain_path": chain, "key_pem": garbage},
            "LIKENESS_C2PA_KEY_PEM is not an unencrypted PEM private key",
        ),
        ({"chain_path": chain, "key_path": other_key}, "does not belong to the first certificate"),
        ({"chain_path": key, "key_path": key}, "holds no PEM certificates"),
        ({"chain_path": tmp_path, "key_path": key}, "is a folder"),
        # The root alone: its key is not the signer's, and it could not sign manifests anyway.
        ({"chain_path": tmp_path / "root.pem", "key_path": key}, "does not belong"),
    ]
    for arguments, reason in cases:
        with pytest.raises(SigningConfigError, match=reason) as caught:
            load_signing_identity(**arguments)  # type: ignore[arg-type]
        assert "c2VjcmV0" not in str(caught.value)

    expired = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=500)
    with pytest.raises(SigningConfigError, match="not now"):
        load_signing_identity(chain, key_path=key, now=expired)


def test_the_check_command_reports_a_bad_pair_on_stderr_with_exit_status_1(tmp_path: Path) -> None:
    ensure_dev_chain(tmp_path)
    command = [sys.executable, "-m", "editing.provenance.certificates", "check"]
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    good = subprocess.run(
        [*command, str(tmp_path / "chain.pem"), str(tmp_path / "signer.key")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    bad = subprocess.run(
        [*command, str(tmp_path / "root.pem"), str(tmp_path / "signer.key")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )

    assert good.returncode == 0 and good.stdout.startswith("ok: ")
    assert bad.returncode == 1 and bad.stderr.startswith("error: ")


def write_pair(directory: Path, leaf: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    """A chain file of `leaf` alone and its key file."""
    chain, key_file = directory / "chain.pem", directory / "leaf.key"
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return chain, key_file


def leaf_certificate(
    issuer_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    purposes: list[x509.ObjectIdentifier],
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")])
    issuer = name if issuer_key is key else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "some CA")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def test_a_signing_certificate_c2pa_would_refuse_is_refused_at_load(tmp_path: Path) -> None:
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    only_document_signing = leaf_certificate(ca_key, key, [DOCUMENT_SIGNING_OID])
    chain, key_file = write_pair(tmp_path, only_document_signing, key)
    with pytest.raises(SigningConfigError, match="lacks emailProtection"):
        load_signing_identity(chain, key_path=key_file)

    self_signed = leaf_certificate(key, key, [ExtendedKeyUsageOID.EMAIL_PROTECTION])
    chain, key_file = write_pair(tmp_path, self_signed, key)
    with pytest.raises(SigningConfigError, match="self-signed"):
        load_signing_identity(chain, key_path=key_file)
