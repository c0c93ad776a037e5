"""The registry's copy of a release's clearance: canonical JSON signed with the platform's C2PA key.

The same fields are inside the released file's manifest (com.likeness.clearance), but that file is a
subject file: erasure destroys it with the subject key. The registry keeps its own signed copy, so who
approved which use under which consent can still be proved after the file is gone. It is signed with the
key and chain that sign manifests (editing.provenance.certificates), so one certificate vouches for both
and anyone holding the chain checks it: ES256 (ECDSA P-256, SHA-256, DER) or PS256 (RSA-PSS, SHA-256,
salt of 32 bytes), over the UTF-8 bytes of audit.chain.canonical_json(clearance).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from django.conf import settings

from audit.chain import canonical_json
from editing.provenance.certificates import SigningIdentity, load_signing_identity

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def platform_signer() -> SigningIdentity:
    """The configured signing identity (settings LIKENESS_C2PA_*), checked as validators will."""
    return load_signing_identity(
        settings.LIKENESS_C2PA_CERT_CHAIN,
        key_path=settings.LIKENESS_C2PA_KEY_FILE or None,
        key_pem=settings.LIKENESS_C2PA_KEY_PEM or None,
    )


def sign(clearance: Mapping[str, Any], identity: SigningIdentity) -> str:
    """The base64 signature of the clearance's canonical JSON with the identity's key."""
    key = serialization.load_pem_private_key(identity.key_pem, password=None)
    message = canonical_json(dict(clearance)).encode()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(message, _PSS, hashes.SHA256())
    else:  # load_signing_identity admits only these two
        raise TypeError("the signing key is neither EC nor RSA.")
    return base64.b64encode(signature).decode()


def verify(clearance: Mapping[str, Any], signature: str, chain_pem: str) -> bool:
    """Whether `signature` is the chain's first certificate's signature over the clearance."""
    try:
        public_key = x509.load_pem_x509_certificates(chain_pem.encode())[0].public_key()
        raw = base64.b64decode(signature, validate=True)
        message = canonical_json(dict(clearance)).encode()
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(raw, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(raw, message, _PSS, hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True
