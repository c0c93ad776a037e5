"""Provenance of released images: C2PA manifest, IPTC XMP, invisible watermark, visible label.

Django-free: every module takes plain arguments, so the release gate, the verify endpoint, a
management command or an outside script call the same code. `stamp` applies the layers in the one
order that keeps each verifiable (label -> watermark -> XMP -> C2PA: a later layer never changes
the pixels or bytes an earlier one relies on, and the C2PA hard binding covers everything before
it); `inspect` reads them all back. docs/provenance.md says what each layer proves and what not.

The entry points live in `editing.provenance.stamp`; nothing is imported here, so
`python -m editing.provenance.certificates` (run by `make setup`) loads no image library.
"""
