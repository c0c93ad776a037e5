"""IPTC DigitalSourceType in XMP, written into JPEG (APP1) and PNG (iTXt "XML:com.adobe.xmp").

The property is Iptc4xmpExt:DigitalSourceType (IPTC Photo Metadata, Extension schema), the
field image search engines and news archives read to label AI-generated images. It is written
when the image is encoded, before the C2PA manifest is signed: the manifest's hard binding then
covers the XMP packet, so changing it makes the manifest invalid.

Reading is for files from anyone (the verify page), so it never runs an XML parser with entity
expansion: a packet with a DOCTYPE or an entity is ignored, and so is one above MAX_PACKET_BYTES.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ElementTree
from typing import Literal

from PIL import Image, PngImagePlugin

IPTC_EXT_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
PNG_XMP_KEY = "XML:com.adobe.xmp"
MAX_PACKET_BYTES = 64 * 1024
# A JPEG released here is encoded once, at this quality with full-resolution chroma (4:4:4), so
# the watermark in the chroma plane and the image's detail lose as little as possible.
JPEG_QUALITY = 95
_URI = re.compile(r"^https?://[\x21-\x7e]{1,200}$")

Format = Literal["JPEG", "PNG"]


def packet(digital_source_type: str) -> bytes:
    """A minimal XMP packet holding only the digital source type."""
    if not _URI.match(digital_source_type):
        raise ValueError("the digital source type is an IPTC NewsCodes URI.")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        f' <rdf:RDF xmlns:rdf="{RDF_NS}">\n'
        f'  <rdf:Description rdf:about="" xmlns:Iptc4xmpExt="{IPTC_EXT_NS}">\n'
        f"   <Iptc4xmpExt:DigitalSourceType>{digital_source_type}</Iptc4xmpExt:DigitalSourceType>\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    ).encode()


def encode(image: Image.Image, image_format: Format, digital_source_type: str) -> bytes:
    """`image` encoded as JPEG or PNG with the XMP packet in it; no other metadata is carried over."""
    xmp = packet(digital_source_type)
    output = io.BytesIO()
    rgb = image.convert("RGB")
    if image_format == "JPEG":
        rgb.save(output, "JPEG", quality=JPEG_QUALITY, subsampling=0, xmp=xmp)
    elif image_format == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt(PNG_XMP_KEY, xmp.decode())
        rgb.save(output, "PNG", pnginfo=info)
    else:
        raise ValueError(f"XMP is written into JPEG or PNG, not {image_format!r}.")
    return output.getvalue()


def read_source_type(data: bytes) -> str | None:
    """The Iptc4xmpExt:DigitalSourceType of a JPEG or PNG file, or None when it has none."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            raw = image.info.get("xmp") or image.info.get(PNG_XMP_KEY)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if len(text) > MAX_PACKET_BYTES or "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        return None
    try:
        root = ElementTree.fromstring(text.strip().removeprefix("\ufeff"))  # noqa: S314 - no DTD (above)
    except ElementTree.ParseError:
        return None
    for description in root.iter(f"{{{RDF_NS}}}Description"):
        element = description.find(f"{{{IPTC_EXT_NS}}}DigitalSourceType")
        if element is not None and element.text:
            return element.text.strip()
        attribute = description.get(f"{{{IPTC_EXT_NS}}}DigitalSourceType")
        if attribute:
            return attribute.strip()
    return None
