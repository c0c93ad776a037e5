"""Releases: the only way a likeness leaves the platform (docs/provenance.md, "Releases").

models: the registry (Release, ReleaseDownload); gate: the one check at creation and at every download;
actions: the only write path (create_release, download_release); clearance: the signed record kept in the
registry; verify: finding a release from an image; previews: what every other route shows of an output.
"""
