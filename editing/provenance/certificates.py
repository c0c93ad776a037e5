"""The signing identity of C2PA manifests: a development chain made on demand, a production one loaded.

One platform signer, not one certificate per tenant. The platform holds every signing key either
way, so per-tenant leaf certificates would suggest a separation between tenants that does not
exist, add a CA key to the running service (to issue them) and put a tenant's name into every
public manifest. The manifest names its tenant by opaque id inside the clearance assertion
instead; the release registry maps that id to the tenant (docs/provenance.md).

C2PA validators (c2pa-rs, which c2pa-python wraps) accept a signing certificate only with the
certificate profile of the C2PA specification: X.509 v3, not a CA, key usage digitalSignature,
an extended key usage it accepts (never anyExtendedKeyUsage), an authority key identifier, and
not self-signed. Measured with c2pa-python 0.38.1 and its default settings: a leaf whose only
purpose is id-kp-documentSigning, or only the C2PA signing purpose, is refused at signing
("certificate missing required EKU"); id-kp-emailProtection is accepted. The development leaf
carries all three, and a configured one must carry emailProtection. The
development chain is root CA -> intermediate CA -> leaf, like a real one, so the same code path
signs in development and production; it reads as "valid but untrusted" because its root is in no
trust list.

Production: LIKENESS_C2PA_CERT_CHAIN names a PEM file (leaf first, then intermediates), and the
private key comes from the file LIKENESS_C2PA_KEY_FILE or the PEM in LIKENESS_C2PA_KEY_PEM,
never from the database. `python -m editing.provenance.certificates check CHAIN KEY` checks a
pair before a deployment uses it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

# The C2PA specification's own signing purpose and id-kp-documentSigning (RFC 9336), which newer
# validators accept; the pinned c2pa-python signs only with id-kp-emailProtection (module docstring).
C2PA_SIGNING_OID = ObjectIdentifier("1.3.6.1.4.1.62558.2.1")
DOCUMENT_SIGNING_OID = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
REQUIRED_SIGNING_PURPOSE = ExtendedKeyUsageOID.EMAIL_PROTECTION

DEV_ROOT_FILE = "root.pem"
DEV_CHAIN_FILE = "chain.pem"
DEV_KEY_FILE = "signer.key"
# A development chain is remade when its leaf has less than this left, so `make setup` keeps
# development signing working without anyone tracking expiry dates.
DEV_RENEW_BEFORE = datetime.timedelta(days=30)
DEV_LEAF_LIFETIME = datetime.timedelta(days=397)
DEV_CA_LIFETIME = datetime.timedelta(days=3650)
# A chain file is a few kilobytes; a huge one is a wrong path, not a chain.
MAX_PEM_BYTES = 256 * 1024

Algorithm = Literal["es256", "ps256"]


class SigningConfigError(ValueError):
    """The configured certificate chain or key cannot sign C2PA manifests; the message says why.

    Never contains key material: the messages name the setting, not its value.
    """


@dataclass(frozen=True)
class SigningIdentity:
    """What c2pa-python needs to sign: the chain (leaf first) and the key, both PEM."""

    chain_pem: bytes
    key_pem: bytes
    algorithm: Algorithm
    subject: str
    not_after: datetime.datetime

    def __repr__(self) -> str:
        # The dataclass default would print the private key into any log line or traceback.
        return f"SigningIdentity(subject={self.subject!r}, algorithm={self.algorithm!r})"


def load_signing_identity(
    chain_path: Path | str,
    *,
    key_path: Path | str | None = None,
    key_pem: str | None = None,
    now: datetime.datetime | None = None,
) -> SigningIdentity:
    """The identity from a chain file and exactly one key source, checked as C2PA validators will.

    Checking here, at load, turns a certificate a validator would reject (wrong key, expired, no
    signing purpose) into a clear configuration error instead of manifests that read as invalid.
    """
    if (key_path is None or str(key_path) == "") == (key_pem is None or key_pem == ""):
        raise SigningConfigError(
            "set exactly one of LIKENESS_C2PA_KEY_FILE (a path) or LIKENESS_C2PA_KEY_PEM (the PEM itself)."
        )
    chain_bytes = _read_pem_file(Path(chain_path), "LIKENESS_C2PA_CERT_CHAIN")
    try:
        chain = x509.load_pem_x509_certificates(chain_bytes)
    except ValueError:
        raise SigningConfigError(
            f"LIKENESS_C2PA_CERT_CHAIN ({chain_path}) holds no PEM certificates."
        ) from None
    if key_path is not None and str(key_path) != "":
        key_bytes = _read_pem_file(Path(key_path), "LIKENESS_C2PA_KEY_FILE")
        key_source = "LIKENESS_C2PA_KEY_FILE"
    else:
        key_bytes = (key_pem or "").replace("\\n", "\n").encode()
        key_source = "LIKENESS_C2PA_KEY_PEM"
    try:
        key = serialization.load_pem_private_key(key_bytes, password=None)
    except (ValueError, TypeError):
        raise SigningConfigError(
            f"{key_source} is not an unencrypted PEM private key (PKCS#8 or traditional)."
        ) from None
    leaf = chain[0]
    algorithm = _algorithm_for(key, key_source)
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise SigningConfigError(
            f"{key_source} does not belong to the first certificate of LIKENESS_C2PA_CERT_CHAIN "
            "(the chain must start with the signing certificate)."
        )
    _check_leaf_profile(leaf, now or datetime.datetime.now(datetime.UTC))
    return SigningIdentity(
        chain_pem=b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        algorithm=algorithm,
        subject=leaf.subject.rfc4514_string(),
        not_after=leaf.not_valid_after_utc,
    )


def ensure_dev_chain(directory: Path, *, now: datetime.datetime | None = None) -> bool:
    """Writes a development root -> intermediate -> leaf chain under `directory` unless a usable one is there.

    Returns whether it wrote one. Idempotent, so `make setup` can call it every time: an existing
    chain is kept while its leaf verifies and has DEV_RENEW_BEFORE left.
    """
    moment = now or datetime.datetime.now(datetime.UTC)
    chain_path, key_path = directory / DEV_CHAIN_FILE, directory / DEV_KEY_FILE
    if chain_path.exists() and key_path.exists():
        try:
            identity = load_signing_identity(chain_path, key_path=key_path, now=moment)
        except SigningConfigError:
            pass
        else:
            if identity.not_after - moment > DEV_RENEW_BEFORE:
                return False
    directory.mkdir(parents=True, exist_ok=True)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name("Likeness development root CA")
    root = _certificate(root_name, root_name, root_key, root_key, moment, DEV_CA_LIFETIME, ca_path_length=1)
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = _certificate(
        _name("Likeness development intermediate CA"),
        root_name,
        intermediate_key,
        root_key,
        moment,
        DEV_CA_LIFETIME,
        ca_path_length=0,
        issuer_certificate=root,
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(
        _name("Likeness development C2PA signer"),
        intermediate.subject,
        leaf_key,
        intermediate_key,
        moment,
        DEV_LEAF_LIFETIME,
        ca_path_length=None,
        issuer_certificate=intermediate,
    )
    pem = serialization.Encoding.PEM
    (directory / DEV_ROOT_FILE).write_bytes(root.public_bytes(pem))
    chain_path.write_bytes(leaf.public_bytes(pem) + intermediate.public_bytes(pem))
    # Written through os.open so the key file is never readable by others, not even briefly.
    key_path.unlink(missing_ok=True)
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(
            leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    return True


def _read_pem_file(path: Path, setting: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_PEM_BYTES:
            raise SigningConfigError(
                f"{setting} ({path}) is {size} bytes; a PEM file is at most {MAX_PEM_BYTES}."
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise SigningConfigError(f"{setting} names {path}, which does not exist.") from None
    except IsADirectoryError:
        raise SigningConfigError(f"{setting} names {path}, which is a folder, not a PEM file.") from None
    except PermissionError:
        raise SigningConfigError(f"{setting} names {path}, which this process may not read.") from None


def _algorithm_for(key: object, key_source: str) -> Algorithm:
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return "es256"
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return "ps256"
    raise SigningConfigError(
        f"{key_source} must be an EC P-256 key (ES256) or an RSA key of 2048+ bits (PS256)."
    )


def _check_leaf_profile(leaf: x509.Certificate, now: datetime.datetime) -> None:
    """The parts of the C2PA certificate profile a configured chain most often gets wrong."""
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise SigningConfigError(
            f"the signing certificate is valid from {leaf.not_valid_before_utc:%Y-%m-%d} to "
            f"{leaf.not_valid_after_utc:%Y-%m-%d}, not now."
        )
    if leaf.issuer == leaf.subject:
        raise SigningConfigError("the signing certificate is self-signed; C2PA needs one issued by a CA.")
    try:
        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        raise SigningConfigError("the signing certificate is a CA certificate; C2PA needs an end-entity one.")
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        purposes = set(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        raise SigningConfigError(
            "the signing certificate needs the key usage and extended key usage extensions."
        ) from None
    if not usage.digital_signature:
        raise SigningConfigError("the signing certificate's key usage lacks digitalSignature.")
    if REQUIRED_SIGNING_PURPOSE not in purposes:
        raise SigningConfigError(
            "the signing certificate's extended key usage lacks emailProtection (1.3.6.1.5.5.7.3.4), "
            "the purpose c2pa-python 0.38.1 requires to sign."
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Likeness development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
    lifetime: datetime.timedelta,
    *,
    ca_path_length: int | None,
    issuer_certificate: x509.Certificate | None = None,
) -> x509.Certificate:
    """One certificate of the development chain; `ca_path_length` None means the signing leaf."""
    is_ca = ca_path_length is not None
    issuer_public = issuer_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Backdated an hour: a verifier whose clock lags a little must not see a future certificate.
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=ca_path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not is_ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer_certificate is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False
        )
    if not is_ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([REQUIRED_SIGNING_PURPOSE, DOCUMENT_SIGNING_OID, C2PA_SIGNING_OID]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def main(argv: list[str] | None = None) -> int:
    """`ensure-dev DIR` (make setup) and `check CHAIN KEY` (before a deployment uses a pair)."""
    parser = argparse.ArgumentParser(prog="python -m editing.provenance.certificates")
    commands = parser.add_subparsers(dest="command", required=True)
    ensure = commands.add_parser("ensure-dev", help="create a development signing chain unless one is usable")
    ensure.add_argument("directory", type=Path)
    check = commands.add_parser("check", help="check a production chain and key as C2PA validators will")
    check.add_argument("chain", type=Path)
    check.add_argument("key", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "ensure-dev":
            written = ensure_dev_chain(args.directory)
            print(f"{'wrote' if written else 'kept'} the development signing chain in {args.directory}")
        else:
            identity = load_signing_identity(args.chain, key_path=args.key)
            print(f"ok: {identity.subject}, {identity.algorithm}, valid until {identity.not_after:%Y-%m-%d}")
    except SigningConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
