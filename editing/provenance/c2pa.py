"""Signed C2PA manifests for released images (c2pa-python), and reading them back.

A manifest is public: anyone who has the file reads it. It therefore holds opaque ids only, never
a person's or a tenant's name: the actions (what made the image), the IPTC digital source type,
for an edit the parent ingredient described by the source photo's SHA-256 alone (never the photo,
whose bytes are the subject's personal data), and the clearance assertion `com.likeness.clearance`
(CLEARANCE_FIELDS; anything else is refused, so a name cannot slip in through a new key).

The hard binding (c2pa.hash.data) covers every byte of the file outside the manifest itself, XMP
included: one changed byte reads back as invalid (assertion.dataHash.mismatch).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import c2pa

from editing.provenance.certificates import SigningIdentity

CLEARANCE_LABEL = "com.likeness.clearance"
ACTIONS_LABEL = "c2pa.actions.v2"
SOURCE_TYPE_BASE = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED_ALGORITHMIC_MEDIA = SOURCE_TYPE_BASE + "trainedAlgorithmicMedia"
COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA = SOURCE_TYPE_BASE + "compositeWithTrainedAlgorithmicMedia"
CLAIM_GENERATOR = {"name": "Likeness", "version": "0.1.0"}
# The states c2pa-rs reports for a manifest whose signature and hashes check out: Trusted when the
# signer chains to a configured trust anchor, Valid otherwise (the development chain's case).
VALID_STATES = frozenset({"Valid", "Trusted"})
INGREDIENT_ID_PREFIX = "sha256:"
# c2pa-python's error kinds that mean "a manifest is there but broken", as opposed to an unreadable file.
_MANIFEST_ERRORS = frozenset(
    {"Assertion", "AssertionNotFound", "Decoding", "Json", "Manifest", "Signature", "Verify"}
)

Kind = Literal["generation", "edit"]
MimeType = Literal["image/jpeg", "image/png"]

# The clearance assertion's fields and their shapes: identifiers and scope only, never names.
MAX_CLEARANCE_TEXT = 200
MAX_CLEARANCE_ITEMS = 50
CLEARANCE_TEXT_FIELDS = ("release_id", "tenant_id", "consent_record_id", "approver_id", "ends_at")
CLEARANCE_LIST_FIELDS = ("purposes", "channels", "territories")
CLEARANCE_FIELDS = (*CLEARANCE_TEXT_FIELDS, "consent_text_sha256", *CLEARANCE_LIST_FIELDS)
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ProvenanceError(ValueError):
    """Input that cannot be stamped (a clearance with a wrong field, an unsupported format)."""


@dataclass(frozen=True)
class ManifestReport:
    """What a file's C2PA manifest says, or that it has none.

    `valid` means the signature and every hash check out; `trusted` additionally that the signer
    chains to a trust anchor the reader was given. `codes` are c2pa-rs' failure codes, e.g.
    assertion.dataHash.mismatch for a changed file, signingCredential.untrusted for a valid one
    whose signer is in no trust list.
    """

    present: bool
    valid: bool = False
    trusted: bool = False
    state: str | None = None
    codes: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    digital_source_type: str | None = None
    ingredient_sha256: tuple[str, ...] = ()
    clearance: dict[str, Any] | None = None
    signer: str | None = None


def mime_type_of(data: bytes) -> MimeType:
    """The container of `data` from its first bytes; the file name or a client's word is not trusted."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    raise ProvenanceError("only JPEG and PNG images carry provenance here.")


def check_clearance(clearance: Mapping[str, Any]) -> dict[str, Any]:
    """The clearance as it goes into the manifest: known fields only, each of the expected shape."""
    unknown = sorted(set(clearance) - set(CLEARANCE_FIELDS))
    if unknown:
        raise ProvenanceError(
            f"the clearance has unknown fields {unknown}: it holds opaque ids and scope only."
        )
    missing = [name for name in CLEARANCE_FIELDS if name not in clearance]
    if missing:
        raise ProvenanceError(f"the clearance lacks {missing}.")
    checked: dict[str, Any] = {}
    for name in CLEARANCE_TEXT_FIELDS:
        value = clearance[name]
        if (
            not isinstance(value, str | int)
            or isinstance(value, bool)
            or not 0 < len(str(value)) <= MAX_CLEARANCE_TEXT
        ):
            raise ProvenanceError(f"clearance {name} must be an id of 1 to {MAX_CLEARANCE_TEXT} characters.")
        checked[name] = str(value)
    if not _DATE.match(checked["ends_at"]):
        raise ProvenanceError("clearance ends_at must be a date, YYYY-MM-DD.")
    digest = clearance["consent_text_sha256"]
    if not isinstance(digest, str) or not _SHA256_HEX.match(digest):
        raise ProvenanceError("clearance consent_text_sha256 must be 64 lowercase hex digits.")
    checked["consent_text_sha256"] = digest
    for name in CLEARANCE_LIST_FIELDS:
        items = clearance[name]
        if (
            not isinstance(items, list | tuple)
            or len(items) > MAX_CLEARANCE_ITEMS
            or not all(isinstance(item, str) and 0 < len(item) <= MAX_CLEARANCE_TEXT for item in items)
        ):
            raise ProvenanceError(
                f"clearance {name} must be a list of at most {MAX_CLEARANCE_ITEMS} short texts."
            )
        checked[name] = list(items)
    return checked


def manifest_definition(
    *,
    kind: Kind,
    title: str,
    mime_type: MimeType,
    clearance: Mapping[str, Any],
    source_photo_sha256: str | None,
) -> dict[str, Any]:
    """The manifest definition c2pa-python's Builder takes, for a generation or an edit."""
    checked = check_clearance(clearance)
    definition: dict[str, Any] = {
        "claim_generator_info": [CLAIM_GENERATOR],
        "title": title,
        "format": mime_type,
    }
    if kind == "generation":
        if source_photo_sha256 is not None:
            raise ProvenanceError("a generation has no source photo.")
        actions: list[dict[str, Any]] = [
            {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA}
        ]
    elif kind == "edit":
        if source_photo_sha256 is None or not _SHA256_HEX.match(source_photo_sha256):
            raise ProvenanceError("an edit names its source photo by SHA-256, 64 lowercase hex digits.")
        # The parent ingredient is described, not embedded: its instance id is the photo's hash, so
        # whoever holds the photo can check it, and the manifest carries none of its pixels.
        definition["ingredients"] = [
            {
                "title": "source photo",
                "relationship": "parentOf",
                "instance_id": INGREDIENT_ID_PREFIX + source_photo_sha256,
                "label": "source-photo",
            }
        ]
        actions = [
            {"action": "c2pa.opened", "parameters": {"ingredientIds": ["source-photo"]}},
            {"action": "c2pa.edited", "digitalSourceType": COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA},
        ]
    else:
        raise ProvenanceError(f"kind must be generation or edit, not {kind!r}.")
    definition["assertions"] = [
        {"label": ACTIONS_LABEL, "data": {"actions": actions}},
        {"label": CLEARANCE_LABEL, "data": checked},
    ]
    return definition


def sign(data: bytes, definition: Mapping[str, Any], identity: SigningIdentity) -> bytes:
    """`data` with the manifest embedded and signed; c2pa-rs checks its own result before returning it."""
    mime_type = mime_type_of(data)
    info = c2pa.C2paSignerInfo(identity.algorithm.encode(), identity.chain_pem, identity.key_pem, None)
    output = io.BytesIO()
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(dict(definition)) as builder:
        builder.sign(signer, mime_type, io.BytesIO(data), output)
    return output.getvalue()


def read(
    data: bytes, mime_type: str | None = None, *, trust_anchors_pem: bytes | None = None
) -> ManifestReport:
    """The report on `data`'s manifest; a file without one reports `present=False`, never raises.

    `trust_anchors_pem` (root certificates) lets a reader that knows the platform's CA report
    `trusted`; without it the best a valid file reads is "Valid".
    """
    context = None
    if trust_anchors_pem is not None:
        context = c2pa.Context.from_dict({"trust": {"trust_anchors": trust_anchors_pem.decode()}})
    try:
        reader = c2pa.Reader(mime_type or mime_type_of(data), io.BytesIO(data), None, context)
    except c2pa.C2paError.ManifestNotFound:
        # Stripped (a re-save, a screenshot, a platform that drops metadata) or never stamped.
        return ManifestReport(present=False)
    except c2pa.C2paError as error:
        # A manifest too damaged to read, or a file c2pa-rs cannot parse at all (truncated): not
        # valid either way. The code names the error's kind only; its message may quote the file.
        kind = type(error).__name__.removeprefix("_C2pa")
        return ManifestReport(
            present=kind in _MANIFEST_ERRORS, state="Invalid", codes=(f"c2pa.error.{kind}",)
        )
    with reader:
        store = json.loads(reader.json())
        state = reader.get_validation_state()
    manifest = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    return _report(manifest, store, state)


def _report(manifest: Mapping[str, Any], store: Mapping[str, Any], state: str | None) -> ManifestReport:
    actions: list[str] = []
    source_type = None
    clearance = None
    for assertion in manifest.get("assertions", []):
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in assertion.get("data", {}).get("actions", []):
                actions.append(str(action.get("action")))
                source_type = action.get("digitalSourceType", source_type)
        elif assertion.get("label") == CLEARANCE_LABEL:
            clearance = dict(assertion.get("data", {}))
    ingredients = tuple(
        str(ingredient.get("instance_id", ""))[len(INGREDIENT_ID_PREFIX) :]
        for ingredient in manifest.get("ingredients", [])
        if str(ingredient.get("instance_id", "")).startswith(INGREDIENT_ID_PREFIX)
    )
    # c2pa-rs lists signingCredential.untrusted among the failures of a Valid manifest: the state is
    # its verdict, the codes say why it is not more.
    failures = store.get("validation_results", {}).get("activeManifest", {}).get("failure", [])
    codes = tuple(str(entry.get("code")) for entry in failures)
    signature = manifest.get("signature_info", {})
    return ManifestReport(
        present=True,
        valid=state in VALID_STATES,
        trusted=state == "Trusted",
        state=state,
        codes=codes,
        actions=tuple(actions),
        digital_source_type=source_type,
        ingredient_sha256=ingredients,
        clearance=clearance,
        signer=signature.get("common_name"),
    )
