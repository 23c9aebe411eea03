"""The fonts embedded in documents: DejaVu Sans, cut down once per process to the scripts a
European invoice prints (Latin, Greek, Cyrillic, punctuation, currency signs).

Parsing the whole font (about 6,000 glyphs) took most of a document's time; the cut-down copy
(about 1,000 glyphs) is parsed in a fraction of it, and fpdf2 still embeds only the glyphs each
document uses. The copies live in a temporary folder for the life of the process.
"""

from __future__ import annotations

import io
import itertools
import logging
import tempfile
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fontTools import subset
from fontTools.ttLib import TTFont
from fpdf.output import OutputProducer as _FpdfOutputProducer
from fpdf.syntax import Name, PDFContentStream

FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}
#: Basic Latin to Latin Extended-B, Greek and Cyrillic, general punctuation (dashes, quotes,
#: narrow no-break space), currency signs, letterlike symbols, arrows and math operators (× −).
RANGES = ((0x20, 0x24F), (0x370, 0x3FF), (0x400, 0x52F), (0x2000, 0x206F), (0x20A0, 0x20CF),
          (0x2100, 0x2122), (0x2190, 0x2193), (0x2212, 0x2212))
_lock = threading.Lock()
# fontTools' subsetter reports every table it prunes at INFO: noise in billsync's output and logs.
logging.getLogger("fontTools.subset").setLevel(logging.WARNING)
_prepared: dict[Path, dict[str, Path]] = {}


def prepared_fonts(font_dir: Path) -> dict[str, Path]:
    """Style ("" regular, "B" bold) → the cut-down TTF of ``font_dir``'s DejaVu Sans."""
    with _lock:
        found = _prepared.get(font_dir)
        if found is not None and all(p.is_file() for p in found.values()):
            return found
        folder = Path(tempfile.mkdtemp(prefix="billsync-fonts-"))
        options = subset.Options()
        options.name_IDs = ["*"]
        options.notdef_outline = True
        options.glyph_names = False
        options.layout_features = []  # no shaping: invoices print plain text
        options.drop_tables += ["GSUB", "GPOS", "GDEF", "kern", "hdmx", "FFTM", "MATH", "LTSH", "VDMX"]
        options.hinting = False
        out = {}
        for style, name in FILES.items():
            font = TTFont(font_dir / name)
            subsetter = subset.Subsetter(options)
            subsetter.populate(unicodes=[c for lo, hi in RANGES for c in range(lo, hi + 1)])
            subsetter.subset(font)
            target = folder / name
            font.save(target)
            out[style] = target
        _prepared[font_dir] = out
        return out


# ---------------------------------------------------------------- the embedded subsets, once each
#
# fpdf2 embeds in each PDF the subset of a font's glyphs the document uses (fontTools subsetting
# and compiling, about 12 ms a font). Documents that use the same glyphs embed the same subset: it
# is made once per process and reused. Every document starts with the same base characters (the
# ASCII set, the labels of both languages, common accented letters: ``BASE_CHARACTERS``), so most
# documents share one subset per font and language.

BASE_CHARACTERS = (
    "".join(chr(c) for c in range(0x20, 0x7F))
    + "àâäçéèêëîïôöùûüÿœæÀÂÄÇÉÈÊËÎÏÔÖÙÛÜŸŒÆß€×−–—‘’“”«»…·°\u202f\u00a0"
)


class _SubsetCache:
    """Stands in for ``fontTools.subset`` inside fpdf2's output: the same ``Options`` and
    ``Subsetter``, but a font subset to glyphs already seen takes the stored result (glyph ids
    and compiled bytes) instead of being subset and compiled again."""

    Options = subset.Options

    def __init__(self) -> None:
        self._results: dict[tuple[str, frozenset[str]], tuple[dict[str, int], bytes]] = {}
        self._lock = threading.Lock()

    def Subsetter(self, options: subset.Options):  # noqa: N802 - fontTools' name
        return _CachedSubsetter(self, options)


class _CachedSubsetter:
    def __init__(self, cache: _SubsetCache, options: subset.Options):
        self.cache, self.options = cache, options
        self.glyphs: frozenset[str] = frozenset()

    def populate(self, glyphs=(), **_unused) -> None:
        self.glyphs = frozenset(glyphs)

    def subset(self, font: Any) -> None:
        """Subset the document's view of a shared font: the shared font itself is never changed (a
        fresh copy read from its file is subset the first time a glyph set is seen)."""
        import io

        path = font.path if isinstance(font, _FontView) else font.reader.file.name
        key = (str(path), self.glyphs)
        with self.cache._lock:
            found = self.cache._results.get(key)
        if found is None:
            fresh = TTFont(path, recalcTimestamp=False)
            subsetter = subset.Subsetter(self.options)
            subsetter.populate(glyphs=self.glyphs)
            subsetter.subset(fresh)
            ids = {name: fresh.getGlyphID(name) for name in fresh.getGlyphOrder()}
            out = io.BytesIO()
            fresh.save(out)
            found = (ids, out.getvalue())
            with self.cache._lock:
                self.cache._results[key] = found
        ids, data = found
        font.getGlyphID = ids.__getitem__
        font.save = lambda file, *a, **k: file.write(data)


def share_subsets() -> None:
    """Make fpdf2 reuse embedded font subsets within this process (idempotent)."""
    import fpdf.output

    if not isinstance(fpdf.output.ftsubset, _SubsetCache):
        fpdf.output.ftsubset = _SubsetCache()  # type: ignore[assignment]


# ---------------------------------------------------------------- the parsed fonts, once each
#
# fpdf2 parses a font for each document (a few ms each). The parsed font is the same for every
# document: it is parsed once per process and each document gets its own copy of what changes
# (the glyphs it uses), over a view of the shared font that the output step cannot change.


class _FontView:
    """A document's view of a shared ``TTFont``: reads go to the shared font; what fpdf2's output
    sets (the subset's glyph ids and bytes) stays on the view."""

    def __init__(self, font: TTFont, path: Path):
        self._font, self.path = font, path

    def __getattr__(self, name: str) -> Any:
        return getattr(self._font, name)

    def __getitem__(self, key: str) -> Any:
        return self._font[key]

    def __contains__(self, key: object) -> bool:
        return key in self._font


_parsed: dict[tuple[Path, str], Any] = {}


def use_fonts(pdf: Any, font_dir: Path, family: str = "DejaVu") -> None:
    """Register the cut-down DejaVu Sans (regular and bold) on ``pdf`` from the process's parsed copies,
    each with the base characters already picked (``BASE_CHARACTERS``)."""
    import copy

    from fpdf import FPDF
    from fpdf.fonts import TTFFont

    share_subsets()
    for style, path in prepared_fonts(font_dir).items():
        key = (path, style)
        with _lock:
            pristine = _parsed.get(key)
            if pristine is None:
                pristine = _parsed[key] = TTFFont(FPDF(), path, f"{family.lower()}{style}", style)
        font = copy.copy(pristine)
        font.i = len(pdf.fonts) + 1
        font.ttfont = _FontView(pristine.ttfont, path)
        font.missing_glyphs = []
        font.biggest_size_pt = 0
        font.subset = _base_subset(font, key)
        pdf.fonts[font.fontkey] = font


def warm_up(font_dir: Path) -> None:
    """Cut, parse and pick the base characters of the fonts now (about 0.3 s), so that processes
    forked afterwards start with them."""
    from fpdf import FPDF

    use_fonts(FPDF(), font_dir)


_base_picks: dict[tuple[Path, str], Any] = {}


def _base_subset(font: Any, key: tuple[Path, str]) -> Any:
    """A new subset map for ``font`` holding the base characters, copied from one made once per font
    (picking them one by one costs more than the rest of the layout)."""
    from fpdf.fonts import SubsetMap

    with _lock:
        template = _base_picks.get(key)
        if template is None:
            template = SubsetMap(font)
            for char in BASE_CHARACTERS:
                template.pick(ord(char))
            _base_picks[key] = template
    subset_map = SubsetMap.__new__(SubsetMap)
    subset_map.font = font
    subset_map._next = template._next
    subset_map._reserved = list(template._reserved)
    subset_map._char_id_per_glyph = dict(template._char_id_per_glyph)
    # What the map started from: the glyphs picked later come after the template's (``_parts``).
    subset_map._billsync_base = (key, len(template._char_id_per_glyph))  # type: ignore[attr-defined]
    return subset_map


_base_codes: dict[tuple[Path, str], dict[str, str]] = {}


def base_codes(font: Any) -> dict[str, str]:
    """A new copy of the base characters' codes in ``font``'s content strings (two bytes each, escaped
    as fpdf2 escapes them), for a font registered by ``use_fonts``: those glyphs are already in
    its subset map."""
    key = font.subset._billsync_base[0]
    with _lock:
        codes = _base_codes.get(key)
        if codes is None:
            template = _base_picks[key]
            codes = _base_codes[key] = {char: font.escape_text(chr(template.pick(ord(char))))
                                        for char in BASE_CHARACTERS if template.pick(ord(char))}
    return dict(codes)


# ---------------------------------------------------------------- the font objects, once each
#
# Writing a TrueType font into a PDF, fpdf2 builds from the document's subset map (character
# codes → glyphs) the subset font, its glyph widths, its ToUnicode CMap and its 128 KiB
# CIDToGIDMap, and compresses the font and the map: about 4 ms a font. Documents with the same
# subset map (most of them: the base characters) get the same bytes, so they are made once per
# process and map, and each document only adds its own PDF objects around them.

_FONT_PARTS_KEPT = 64


@dataclass(frozen=True)
class _FontParts:
    widths: str  # the CIDFont's /W array
    to_unicode: bytes  # the ToUnicode CMap
    cid_to_gid: bytes  # the CIDToGIDMap, compressed
    font_file: bytes  # the subset TrueType font, compressed
    font_file_length: int  # … and its length before compression


_font_parts: OrderedDict[tuple[Any, ...], _FontParts] = OrderedDict()


class _CompressedStream(PDFContentStream):
    """A stream whose content is already FlateDecode-compressed."""

    def __init__(self, compressed: bytes, *, length1: int | None = None):
        super().__init__(contents=b"")
        self._contents = compressed
        self.filter = Name("FlateDecode")
        self.length = len(compressed)
        if length1 is not None:
            self.length1 = length1


def _parts(font: Any) -> _FontParts:
    """The bytes of ``font``'s embedding for its current subset map, made at the first document
    that has this map (as fpdf2's own ``_add_fonts`` makes them)."""
    base = getattr(font.subset, "_billsync_base", None)
    if base is not None:  # a map copied from a base map: the base map's key and the glyphs added since
        key: tuple[Any, ...] = (base[0], tuple(
            (glyph.glyph_name, glyph.unicode, glyph.glyph_width, code)
            for glyph, code in itertools.islice(font.subset._char_id_per_glyph.items(), base[1], None)))
    else:
        key = (str(font.ttfont.path), tuple((glyph.glyph_name, glyph.unicode, glyph.glyph_width, code)
                                            for glyph, code in font.subset.items() if glyph is not None))
    with _lock:
        found = _font_parts.get(key)
    if found is not None:
        return found
    import fpdf.output

    options = fpdf.output.ftsubset.Options(notdef_outline=True, recommended_glyphs=True)
    options.drop_tables += ["FFTM", "GDEF", "GPOS", "GSUB", "MATH", "hdmx", "meta", "sbix", "CBDT", "CBLC",
                            "EBDT", "EBLC", "EBSC", "SVG ", "CPAL", "COLR"]
    subsetter = fpdf.output.ftsubset.Subsetter(options)
    subsetter.populate(glyphs=font.subset.get_all_glyph_names())
    subsetter.subset(font.ttfont)
    out = io.BytesIO()
    font.ttfont.save(out)
    font_file = out.getvalue()
    cid_to_gid = bytearray(256 * 256 * 2)
    for glyph, code in font.subset.items():
        if glyph is not None:
            gid = font.ttfont.getGlyphID(glyph.glyph_name)
            cid_to_gid[code * 2:code * 2 + 2] = gid.to_bytes(2, "big")
    entries = [f"<{code:04X}> <{''.join(_utf16_hex(c) for c in glyph.unicode)}>\n"
               for glyph, code in font.subset.items()
               if glyph is not None and isinstance(glyph.unicode, tuple) and glyph.unicode]
    to_unicode = ("/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n/CIDSystemInfo\n"
                  "<</Registry (Adobe)\n/Ordering (UCS)\n/Supplement 0\n>> def\n/CMapName /Adobe-Identity-UCS def\n"
                  "/CMapType 2 def\n1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
                  f"{fpdf.output._build_cmap_blocks(entries, 'bfchar')}"
                  "endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend")
    level = PDFContentStream._COMPRESSION_LEVEL
    found = _FontParts(fpdf.output._tt_font_widths(font), to_unicode.encode("latin-1"),
                       zlib.compress(bytes(cid_to_gid), level), zlib.compress(font_file, level), len(font_file))
    with _lock:
        _font_parts[key] = found
        while len(_font_parts) > _FONT_PARTS_KEPT:
            _font_parts.popitem(last=False)
    return found


def _utf16_hex(code: int) -> str:
    if code > 0xFFFF:
        return f"{0xD800 | (code - 0x10000) >> 10:04X}{0xDC00 | (code & 0x3FF):04X}"
    return f"{code:04X}"


class OutputProducer(_FpdfOutputProducer):
    """fpdf2's PDF writer, the TrueType fonts' bytes taken from the process's store (``_parts``).
    Anything else (core, colour or CFF fonts, glyphs a font lacks, PDF/A-1) is fpdf2's own path."""

    def _add_fonts(self, image_objects_per_index: Any, gfxstate_objs_per_name: Any,
                   pattern_objs_per_name: Any) -> dict[int, Any]:
        from fpdf.fonts import TTFFont
        from fpdf.output import CIDSystemInfo, PDFFont
        from fpdf.syntax import PDFArray

        fonts: list[Any] = sorted(self.fpdf.fonts.values(), key=lambda font: font.i)
        compliance = self.fpdf._compliance
        if (compliance and compliance.part == 1) or not all(
                isinstance(f, TTFFont) and not f.color_font and not f.is_cff and not f.missing_glyphs
                and isinstance(f.ttfont, _FontView) for f in fonts):
            return super()._add_fonts(image_objects_per_index, gfxstate_objs_per_name, pattern_objs_per_name)
        objects: dict[int, Any] = {}
        for font in fonts:
            parts = _parts(font)
            name = f"MPDFAA+{font.name}"
            composite = PDFFont(subtype="Type0", base_font=name, encoding="Identity-H")
            self._add_pdf_obj(composite, "fonts")
            objects[font.i] = composite
            cid_font = PDFFont(subtype="CIDFontType2", base_font=name, d_w=font.desc.missing_width, w=parts.widths)
            self._add_pdf_obj(cid_font, "fonts")
            composite.descendant_fonts = PDFArray([cid_font])
            to_unicode = PDFContentStream(parts.to_unicode)
            self._add_pdf_obj(to_unicode, "fonts")
            composite.to_unicode = to_unicode
            system_info = CIDSystemInfo()
            self._add_pdf_obj(system_info, "fonts")
            cid_font.c_i_d_system_info = system_info
            descriptor: Any = font.desc
            descriptor.font_name = Name(name)
            self._add_pdf_obj(descriptor, "fonts")
            cid_font.font_descriptor = descriptor
            cid_to_gid = _CompressedStream(parts.cid_to_gid)
            self._add_pdf_obj(cid_to_gid, "fonts")
            cid_font.c_i_d_to_g_i_d_map = cid_to_gid
            font_file = _CompressedStream(parts.font_file, length1=parts.font_file_length)
            self._add_pdf_obj(font_file, "fonts")
            descriptor.font_file2 = font_file
            font.subset.pick.cache_clear()
            font.subset.get_glyph.cache_clear()
        return objects
