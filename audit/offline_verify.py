"""Verify an exported audit-chain segment without the platform: Python's standard library only.

This file is copied, as it is, into every ledger export (`chain/verify_chain.py`), so that an
outside counsel can check the segment on their own machine:

    python3 chain/verify_chain.py chain/segment.jsonl [chain/checkpoint.jsonl ed25519:PUBLIC-KEY]

`segment.jsonl` holds one entry per line, in seq order, without gaps: the entries about the
subject in full, every other entry of the tenant's chain in between reduced to its seq, its
prev_hash and its hash (they concern other people). A full entry must hash to its `hash`
(sha256 of prev_hash ‖ the canonical JSON of its content, as audit.chain computes it), name
the subject its content names, and every entry's prev_hash must be the hash before it. One
altered, removed or reordered line makes it fail with the line's seq.

A checkpoint line, when given, is the platform's signed statement of the chain's head at
some seq inside the segment (entries after it are linked to it but not yet signed for);
with the `cryptography` package and the tenant's public key its signature is checked too.
Without a checkpoint the segment proves itself consistent, not that the platform did not
rewrite it consistently (docs/operations.md, "Checking a subject's part of the chain").
Deliberately standalone (no import of the platform), so its canonical JSON restates
audit.chain's one line; the tests recompute the platform's stored hashes with it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import Iterable
from typing import Any

CANONICAL_KEYS = ("tenant", "seq", "at", "actor", "action", "target_type", "target_id", "payload")
SUBJECT_TARGET_TYPE = "consent.subject"


class SegmentError(Exception):
    """The segment does not hold; the message names the line."""


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def named_subject(entry: dict[str, Any]) -> int | None:
    """The subject an entry's content names (audit.chain.subject_reference, restated)."""
    if entry["target_type"] == SUBJECT_TARGET_TYPE:
        target = entry["target_id"]
        return int(target) if target.isascii() and target.isdigit() else None
    value = entry["payload"].get("subject_id")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def verify_segment(lines: Iterable[str]) -> tuple[int, int, int, dict[int, str]]:
    """(first seq, last seq, full entries, hash by seq), or SegmentError at the first line that fails."""
    first = last = full = 0
    previous_hash: str | None = None
    hashes: dict[int, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            seq, prev_hash, digest = int(entry["seq"]), str(entry["prev_hash"]), str(entry["hash"])
        except (ValueError, KeyError, TypeError) as error:
            raise SegmentError(f"line {number}: not a segment entry ({error})") from None
        if last and seq != last + 1:
            raise SegmentError(f"seq {seq}: expected seq {last + 1} (an entry is missing or out of order)")
        if previous_hash is not None and prev_hash != previous_hash:
            raise SegmentError(f"seq {seq}: prev_hash is not the previous entry's hash")
        if "action" in entry:
            try:
                content = {key: entry[key] for key in CANONICAL_KEYS}
                subject = named_subject(entry)
            except (KeyError, AttributeError) as error:
                raise SegmentError(f"seq {seq}: incomplete entry ({error})") from None
            recomputed = hashlib.sha256(
                prev_hash.encode("ascii") + canonical_json(content).encode()
            ).hexdigest()
            if recomputed != digest:
                raise SegmentError(f"seq {seq}: its content does not match its hash (altered)")
            if entry.get("subject") != subject:
                raise SegmentError(f"seq {seq}: its subject does not match its content (altered)")
            full += 1
        first = first or seq
        last, previous_hash, hashes[seq] = seq, digest, digest
    if not last:
        raise SegmentError("the segment is empty")
    return first, last, full, hashes


def verify_checkpoint(line: str, public_key: str, hashes: dict[int, str]) -> str:
    """The checkpoint's description once its signature and head hash agree with the segment."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not public_key.startswith("ed25519:"):
        raise SegmentError("the public key is written ed25519:<base64>")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("ed25519:")))
    signed = json.loads(line)
    try:
        key.verify(base64.b64decode(signed["signature"]), signed["checkpoint"].encode())
    except Exception:  # cryptography's InvalidSignature, or a malformed signature
        raise SegmentError("the checkpoint's signature does not verify with this key") from None
    checkpoint = json.loads(signed["checkpoint"])
    seq = int(checkpoint["seq"])
    if hashes.get(seq) != checkpoint["head_hash"]:
        raise SegmentError(f"seq {seq}: the chain no longer has the hash the signed checkpoint recorded")
    described = f"checkpoint #{checkpoint['number']} of {checkpoint['at']} covers seq {seq}"
    later = max(hashes)
    if later > seq:
        described += f"; entries {seq + 1}..{later} are newer than any signed checkpoint"
    return described


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 4):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as segment:
            first, last, full, hashes = verify_segment(segment)
        print(f"ok: entries {first}..{last} are linked; {full} full entries recompute to their hashes")
        if len(argv) == 4:
            with open(argv[2], encoding="utf-8") as checkpoint:
                print("ok:", verify_checkpoint(checkpoint.read().strip(), argv[3], hashes))
    except SegmentError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
