"""The PDF of an invoice or credit note, laid out with fpdf2 (A4, DejaVu Sans embedded, PDF/A-3B),
with its Factur-X XML attached when it has one.

A page a customer's accounts payable can file as it is: the seller's identity and the buyer's
block, the number and the dates, the lines with the explanation of each amount, the VAT breakdown
per group, the totals, the payment terms with the bank details and the legal mentions, in the
customer's language. Every figure is the engine's (``DocumentSource``), printed to the currency's
minor unit; nothing is recomputed here.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime, time
from typing import Any
from xml.sax.saxutils import escape

from facturx.facturx import FACTURX_FILENAME, generate_xmp_bytes
from fpdf import FPDF
from fpdf.enums import PageMode, PDFResourceType, XPos, YPos
from fpdf.fonts import SubsetMap
from fpdf.syntax import PDFDate
from fpdf.syntax import create_dictionary_string as pdf_dict

from billing_engine.use_cases.documents import CREDIT_NOTE, DocumentLine, DocumentSource
from connector.documents.cii import buyer_siren
from connector.documents.fonts import OutputProducer, base_codes, use_fonts
from connector.documents.seller import Seller
from connector.documents.wording import (
    CATEGORY_NAMES,
    country_name,
    day,
    label,
    legal_notes,
    money,
    number,
    reason,
)

INK = (33, 37, 41)
MUTED = (108, 117, 125)
ACCENT = (22, 73, 120)
RULE = (206, 212, 218)
BAND = (241, 244, 248)
LEFT, RIGHT, TOP = 18.0, 18.0, 16.0
WIDTH = 210.0 - LEFT - RIGHT
# Lines table: description, quantity, unit price, discount, VAT, amount (mm).
COLUMNS = (64.0, 14.0, 30.0, 20.0, 18.0, 28.0)


class _Document(FPDF):
    def __init__(self, seller: Seller, source: DocumentSource, xml_note: str):
        super().__init__(format="A4", unit="mm", enforce_compliance="PDFA_3B")
        self.seller, self.source, self.xml_note = seller, source, xml_note
        self.lang = source.language
        use_fonts(self, seller.font_dir)
        self.set_margins(LEFT, TOP, RIGHT)
        self.set_auto_page_break(True, margin=26)
        self.alias_nb_pages()
        title = f"{label(self.lang, source.kind)} {source.number}"
        self.set_title(title)
        self.set_author(seller.name)
        self.set_subject(f"{title} — {source.buyer.name}")
        self.set_creator("billsync")
        self.set_lang(self.lang)
        # The document's date is its issue date, so the same invoice always gives the same file.
        self.set_creation_date(datetime.combine(source.issued_on, time(0), tzinfo=UTC))
        self.faces: dict[bool, Any] = {False: self.fonts["dejavu"], True: self.fonts["dejavuB"]}
        self.face, self.size_pt, self.color_op = self.faces[False], 10.0, _color_op(INK)
        # Per face, each character's code in the content stream (its glyph picked into the subset).
        self.codes: dict[int, dict[str, str]] = {face.i: base_codes(face) for face in self.faces.values()}
        self.fonts_used: set[tuple[int, int]] = set()  # (font, page) in the page's resources

    def style(self, size: float, *, bold: bool = False, color: tuple[int, int, int] = INK) -> None:
        """The font (regular or bold), size (pt) and colour of the text ``put`` writes next."""
        self.face, self.size_pt, self.color_op = self.faces[bold], size, _color_op(color)

    def put(self, w: float, h: float, text: str, align: str = "L", fill: bool = False,
            new_x: XPos = XPos.RIGHT, new_y: YPos = YPos.TOP) -> None:
        """What fpdf2's ``cell`` draws for one line of plain text (same box, margins, baseline, fill and
        next position, the same page break), written straight to the page: a document has about 90
        of them and ``cell`` parses, measures and shapes each as rich text."""
        self._perform_page_break_if_need_be(h)
        x, y, k, face = self.x, self.y, self.k, self.face
        out = []
        if fill:
            out.append(f"{x * k:.2f} {(self.h - y) * k:.2f} {w * k:.2f} {-h * k:.2f} re f")
        if text:
            codes = self.codes[face.i]
            try:
                encoded = "".join([codes[c] for c in text])
            except KeyError:
                for c in text:
                    if c not in codes:
                        codes[c] = _encode(face, c)
                encoded = "".join([codes[c] for c in text])
            if align == "R":
                dx = w - self.c_margin - text_width(self, text)
            elif align == "C":
                dx = (w - text_width(self, text)) / 2
            else:
                dx = self.c_margin
            baseline = (self.h - y - 0.5 * h - 0.3 * self.size_pt / k) * k
            out.append(f"q {self.color_op} BT /F{face.i} {self.size_pt:.2f} Tf {(x + dx) * k:.2f} {baseline:.2f} Td "
                       f"({encoded}) Tj ET Q")
            if (face.i, self.page) not in self.fonts_used:
                self.fonts_used.add((face.i, self.page))
                self._resource_catalog.add(PDFResourceType.FONT, face.i, self.page)
        if out:
            self._out(" ".join(out))
        self.x = x + w if new_x == XPos.RIGHT else self.l_margin if new_x == XPos.LMARGIN else x
        if new_y == YPos.NEXT:
            self.y = y + h

    def footer(self) -> None:
        s = self.seller
        self.set_y(-20)
        self.set_draw_color(*RULE)
        self.line(LEFT, self.get_y(), LEFT + WIDTH, self.get_y())
        self.ln(1.5)
        style = self.face, self.size_pt, self.color_op  # a page break can come in the middle of a paragraph
        self.style(7, color=MUTED)
        parts = [s.name, s.legal_form, f"{label(self.lang, 'siren' if s.country == 'FR' else 'company_id')} "
                 f"{s.company_id}", f"{label(self.lang, 'vat_id')} {s.vat_id}"]
        self.put(WIDTH, 3.5, " · ".join(p for p in parts if p), align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        note = label(self.lang, "no_facturx_short" if self.xml_note else "facturx")
        self.put(WIDTH - 30, 3.5, note, new_x=XPos.RIGHT, new_y=YPos.TOP)
        self.face, self.size_pt, self.color_op = style
        # fpdf2 writes the page count ({nb}) when the document is complete.
        self.set_font("DejaVu", "", 7)
        self.set_text_color(*MUTED)
        self.cell(30, 3.5, label(self.lang, "page", n=self.page_no(), total="{nb}"), align="R")


def render_pdf(source: DocumentSource, seller: Seller, *, xml_note: str = "",
               facturx_xml: bytes | None = None) -> bytes:
    """The PDF/A-3B of the document; with ``facturx_xml``, a Factur-X EN 16931 PDF carrying it
    (``attach_facturx``)."""
    pdf = _Document(seller, source, xml_note)
    pdf.add_page()
    _header(pdf)
    _parties(pdf)
    _references(pdf)
    _lines(pdf)
    _breakdown_and_totals(pdf)
    _payment_and_mentions(pdf)
    if facturx_xml is not None:
        attach_facturx(pdf, facturx_xml)
    data = bytes(pdf.output(output_producer_class=_dated(OutputProducer)))
    SubsetMap.pick.cache_clear()  # fpdf2 caches every document's picks: let them go
    return data


@functools.cache
def _dated(writer: type) -> type:
    """``writer`` dating the XMP it makes (documents without an attached XML) by the document's own
    date: fpdf2 stamps its modify and metadata dates with the time of writing, so the same
    document rendered twice would differ."""

    class Dated(writer):  # type: ignore[misc, valid-type]
        def _build_xmp_from_info(self) -> str:
            xmp = super()._build_xmp_from_info()
            when = self.fpdf.creation_date.astimezone(UTC).isoformat(timespec="seconds")
            for field in ("xmp:ModifyDate", "xmp:MetadataDate"):
                head, found, tail = xmp.partition(f'{field}="')
                if found:
                    xmp = f'{head}{found}{when}{tail[tail.index(chr(34)):]}'
            return xmp

    return Dated


def attach_facturx(pdf: FPDF, xml: bytes) -> None:
    """Make ``pdf`` (PDF/A-3B) a Factur-X EN 16931 PDF as the factur-x library makes one, written in
    one pass by fpdf2: ``factur-x.xml`` embedded (FlateDecode, its size, MD5 and date) as the
    document's associated file with ``/AFRelationship /Data`` (``/AF`` on the catalog, listed in
    ``/EmbeddedFiles``, the viewer opening on the attachments), and the XMP the library prepares
    (``generate_xmp_bytes``: PDF/A-3B identification, title, author, subject, and the Factur-X
    extension schema with ``fx:DocumentType`` INVOICE, ``fx:DocumentFileName`` factur-x.xml,
    ``fx:ConformanceLevel`` EN 16931)."""
    when = pdf.creation_date
    embedded = pdf.embed_file(bytes=xml, basename=FACTURX_FILENAME, mime_type="text/xml", desc="Factur-X XML file",
                              associated_file_relationship="Data", compress=True)
    # The checksum is the XML's own (fpdf2's ``checksum`` option would hash the compressed stream).
    embedded.params = pdf_dict({"/Size": len(xml), "/ModDate": PDFDate(when, with_tz=True).serialize(),
                                "/CheckSum": f"<{hashlib.md5(xml, usedforsecurity=False).hexdigest()}>"})
    pdf.page_mode = PageMode.USE_ATTACHMENTS
    pdf.set_xmp_metadata(facturx_xmp(pdf.title, str(pdf.author), pdf.subject, when))


_XMP_FIELDS = {"title": "\ue000", "author": "\ue001", "subject": "\ue002"}
_xmp_template: list[tuple[str, str]] = []  # (the XMP with a token per field, its timestamp)


def facturx_xmp(title: str, author: str, subject: str, when: datetime) -> str:
    """The Factur-X EN 16931 XMP the factur-x library prepares (``generate_xmp_bytes``) for this title,
    author and subject, dated ``when`` instead of the time it is made, without its ``<?xpacket?>``
    wrapper (fpdf2 adds its own) and naming fpdf2 as the PDF producer. The library's XMP is made
    once per process with a token in each field, which each document replaces (building it costs
    more than a millisecond)."""
    if not _xmp_template:
        packet = generate_xmp_bytes("factur-x", "en16931", None, _XMP_FIELDS).decode("utf-8")
        xmp = packet[packet.index("<x:xmpmeta"):packet.rindex("</x:xmpmeta>") + len("</x:xmpmeta>")]
        stamp = xmp.split("<xmp:CreateDate>", 1)[1].split("<", 1)[0]
        _xmp_template.append((xmp.replace("<pdf:Producer>pypdf</pdf:Producer>",
                                          "<pdf:Producer>fpdf2</pdf:Producer>"), stamp))
    xmp, stamp = _xmp_template[0]
    for field, value in (("title", title), ("author", author), ("subject", subject)):
        # As lxml writes a text node in ASCII: &, <, > escaped, other characters as references.
        xmp = xmp.replace(_xml_text(_XMP_FIELDS[field]), _xml_text(value))
    return xmp.replace(stamp, when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00"))


def _xml_text(value: str) -> str:
    return escape(value).encode("ascii", "xmlcharrefreplace").decode("ascii")


def _encode(face: Any, char: str) -> str:
    """``char`` as ``face`` writes it in a string of the page (two bytes, escaped), its glyph picked into the
    document's subset; nothing for a character the font lacks (fpdf2 leaves it out and warns)."""
    code = face.subset.pick(ord(char))
    return face.escape_text(chr(code)) if code else ""


_color_ops: dict[tuple[int, int, int], str] = {}


def _color_op(color: tuple[int, int, int]) -> str:
    op = _color_ops.get(color)
    if op is None:
        op = _color_ops[color] = " ".join(f"{c / 255:.3f}" for c in color) + " rg"
    return op


def _units(pdf: _Document, text: str) -> float:
    """The advance of ``text`` in the current face, in thousandths of its size."""
    widths: Any = pdf.face.cw  # a TTF font's advance per code point
    return sum(map(widths.__getitem__, map(ord, text)))


_word_units: dict[tuple[str, str], float] = {}  # (font, word) → its advance: invoices repeat their words


def _word(pdf: _Document, word: str) -> float:
    key = (pdf.face.fontkey, word)
    units = _word_units.get(key)
    if units is None:
        if len(_word_units) > 100_000:
            _word_units.clear()
        units = _word_units[key] = _units(pdf, word)
    return units


def text_width(pdf: _Document, text: str) -> float:
    """The width of ``text`` in mm in the current face and size: the sum of its glyphs' advances
    (what fpdf2's ``get_string_width`` returns for plain text, without its markup parsing)."""
    return float(_units(pdf, text)) * pdf.size_pt * 0.001 / pdf.k


def wrap(pdf: _Document, text: str, width: float) -> list[str]:
    """The lines ``text`` takes in ``width`` mm in the current face, broken between words (a word
    longer than the width is cut); each word is measured once. fpdf2's own ``multi_cell`` does the
    same at several times the cost."""
    scale = pdf.size_pt * 0.001 / pdf.k
    limit = width - 1
    space = _word(pdf, " ")
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current, used = "", 0.0
        for word in paragraph.split(" "):
            units = _word(pdf, word)
            if current and float(used + space + units) * scale <= limit:
                current, used = f"{current} {word}", used + space + units
                continue
            if not current and float(units) * scale <= limit:
                current, used = word, units
                continue
            if current:
                lines.append(current)
            while float(units) * scale > limit and len(word) > 1:
                cut = len(word) - 1
                while cut > 1 and text_width(pdf, word[:cut]) > limit:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
                units = _units(pdf, word)
            current, used = word, units
        lines.append(current)
    return lines


def paragraph(pdf: _Document, width: float, height: float, text: str) -> None:
    """``text`` wrapped in ``width`` mm from the current position, one line every ``height`` mm; the
    next line starts where this one started."""
    x = pdf.get_x()
    for line in wrap(pdf, text, width):
        pdf.set_x(x)
        pdf.put(width, height, line, new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_x(x)


def _text(pdf: _Document, size: float, *, bold: bool = False, color=INK) -> None:
    pdf.style(size, bold=bold, color=color)


def _header(pdf: _Document) -> None:
    s, src, lang = pdf.seller, pdf.source, pdf.lang
    top = pdf.get_y()
    x = LEFT
    if s.logo is not None:
        pdf.image(str(s.logo), x=LEFT, y=top, h=14)
        pdf.set_y(top + 16)
    else:
        _text(pdf, 15, bold=True, color=ACCENT)
        pdf.put(110, 8, s.name, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    # The document's kind and number, right.
    pdf.set_xy(x + WIDTH - 80, top)
    _text(pdf, 20, bold=True, color=ACCENT)
    pdf.put(80, 9, label(lang, src.kind).upper(), align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_x(x + WIDTH - 80)
    _text(pdf, 10, bold=True)
    pdf.put(80, 5.5, src.number, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(max(pdf.get_y(), top + 18))


def _block(pdf: _Document, x: float, y: float, w: float, title: str, lines: list[tuple[str, bool]]) -> float:
    pdf.set_xy(x, y)
    _text(pdf, 7.5, bold=True, color=MUTED)
    pdf.put(w, 4.5, title.upper(), new_x=XPos.LEFT, new_y=YPos.NEXT)
    for text, bold in lines:
        if not text:
            continue
        pdf.set_x(x)
        _text(pdf, 10 if bold else 8.5, bold=bold)
        paragraph(pdf, w, 4.6 if bold else 4.1, text)
    return pdf.get_y()


def _parties(pdf: _Document) -> None:
    s, src, lang = pdf.seller, pdf.source, pdf.lang
    y = pdf.get_y() + 2
    seller_lines = [(s.name, True), (s.legal_form, False), (s.street, False), (f"{s.postal_code} {s.city}", False),
                    (country_name(s.country, lang), False),
                    (f"{label(lang, 'siren' if s.country == 'FR' else 'company_id')} {s.company_id}", False),
                    (f"{label(lang, 'vat_id')} {s.vat_id}", False),
                    (f"{label(lang, 'contact')} {s.contact}" if s.contact else "", False)]
    left_end = _block(pdf, LEFT, y, 80, label(lang, "seller"), seller_lines)
    b = src.buyer
    siren = buyer_siren(src)
    buyer_lines = [(b.name, True), (b.street, False), (b.street2, False),
                   (" ".join(p for p in (b.postal_code, b.city) if p), False), (b.region, False),
                   (country_name(b.country, lang), False),
                   (f"{label(lang, 'siren')} {siren}" if siren else "", False),
                   (f"{label(lang, 'vat_id')} {b.vat_id}" if b.vat_id else "", False)]
    box_x, box_w = LEFT + WIDTH - 82, 82
    pdf.set_fill_color(*BAND)
    right_end = _block(pdf, box_x + 4, y + 3, box_w - 8, label(lang, "bill_to"), buyer_lines)
    pdf.set_draw_color(*RULE)
    pdf.rect(box_x, y, box_w, right_end - y + 3)
    pdf.set_y(max(left_end, right_end + 3) + 5)


def _references(pdf: _Document) -> None:
    src, lang = pdf.source, pdf.lang
    items = [(label(lang, "number"), src.number), (label(lang, "issued_on"), day(src.issued_on, lang))]
    if src.kind == CREDIT_NOTE:
        if src.corrects_number:
            items.append((label(lang, "corrects"),
                          f"{src.corrects_number} {label(lang, 'of')} {day(src.corrects_issued_on, lang)}"))
    else:
        items.append((label(lang, "due_on"), day(src.due_on, lang)))
        if src.period_starts_on and src.period_ends_before:
            last = src.period_ends_before.toordinal() - 1
            from datetime import date

            items.append((label(lang, "period"), f"{day(src.period_starts_on, lang)} – "
                                                 f"{day(date.fromordinal(max(last, src.period_starts_on.toordinal())), lang)}"))
    if src.purchase_order:
        items.append((label(lang, "purchase_order"), src.purchase_order))
    if src.buyer_reference:
        items.append((label(lang, "buyer_reference"), src.buyer_reference))
    items.extend((attribute.label(lang), attribute.value) for attribute in src.attributes)
    per_row = 3
    width = WIDTH / per_row
    # A value too long for its box even at the smallest size is written in full under the band.
    _text(pdf, 6.5)
    long = [(title, value) for title, value in items if text_width(pdf, value) > width - 5]
    items = [item for item in items if item not in long]
    y = pdf.get_y()
    pdf.set_fill_color(*BAND)
    rows = (len(items) + per_row - 1) // per_row
    pdf.rect(LEFT, y, WIDTH, rows * 10 + 2, style="F")
    for n, (title, value) in enumerate(items):
        pdf.set_xy(LEFT + 3 + (n % per_row) * width, y + 1.5 + (n // per_row) * 10)
        _text(pdf, 7, bold=True, color=MUTED)
        pdf.put(width - 4, 3.8, title.upper(), new_x=XPos.LEFT, new_y=YPos.NEXT)
        size = 9.0
        _text(pdf, size)
        while size > 6.5 and text_width(pdf, value) > width - 5:
            size -= 0.5
            _text(pdf, size)
        pdf.put(width - 4, 4.6, value)
    pdf.set_y(y + rows * 10 + (3 if long else 8))
    for title, value in long:
        pdf.set_x(LEFT)
        _text(pdf, 8)
        paragraph(pdf, WIDTH, 4, f"{title} : {value}" if lang == "fr" else f"{title}: {value}")
    if long:
        pdf.ln(3)
    if src.kind == CREDIT_NOTE and src.reason:
        _text(pdf, 9)
        why = reason(lang, src.reason)
        paragraph(pdf, WIDTH, 4.5, f"{label(lang, 'reason')} : {why}" if lang == "fr"
                  else f"{label(lang, 'reason')}: {why}")
        pdf.ln(2)


def _table_header(pdf: _Document) -> None:
    lang = pdf.lang
    titles = (label(lang, "description"), label(lang, "quantity"), label(lang, "unit_price"), label(lang, "discount"),
              label(lang, "vat"), label(lang, "amount"))
    pdf.set_fill_color(*ACCENT)
    _text(pdf, 7.5, bold=True, color=(255, 255, 255))
    for n, (title, width) in enumerate(zip(titles, COLUMNS, strict=True)):
        pdf.put(width, 6.5, f" {title}" if n == 0 else title, align="L" if n == 0 else "R", fill=True)
    pdf.ln(6.5)


def _lines(pdf: _Document) -> None:
    _table_header(pdf)
    for n, line in enumerate(pdf.source.lines):
        _line(pdf, line, shade=n % 2 == 1)
    pdf.set_draw_color(*ACCENT)
    pdf.line(LEFT, pdf.get_y(), LEFT + WIDTH, pdf.get_y())
    pdf.ln(4)


def _line(pdf: _Document, line: DocumentLine, *, shade: bool) -> None:
    src, lang = pdf.source, pdf.lang
    cur = src.currency
    description = line.description or line.product_code
    detail = line.explanation
    rate = "—" if line.tax.code == "O" else f"{number(line.tax.percent, lang)} %"
    if line.tax.code not in ("S",):
        rate = f"{rate} {line.tax.code}"
    values = (number(line.quantity, lang), number(line.unit_price, lang),
              money(line.discount, cur, lang).rsplit(" ", 1)[0] if line.discount else "",
              rate, money(line.net, cur, lang).rsplit(" ", 1)[0])
    # Height: the description and its explanation wrap in the first column.
    _text(pdf, 8.5, bold=True)
    desc_lines = wrap(pdf, description, COLUMNS[0] - 2)
    _text(pdf, 7)
    detail_lines = wrap(pdf, detail, COLUMNS[0] - 2) if detail else []
    height = len(desc_lines) * 4.2 + len(detail_lines) * 3.4 + 2.4
    if pdf.get_y() + height > pdf.page_break_trigger:
        pdf.add_page()
        _table_header(pdf)
    y = pdf.get_y()
    if shade:
        pdf.set_fill_color(*BAND)
        pdf.rect(LEFT, y, WIDTH, height, style="F")
    pdf.set_xy(LEFT + 1.5, y + 1.2)
    _text(pdf, 8.5, bold=True)
    for text in desc_lines:
        pdf.put(COLUMNS[0] - 2, 4.2, text, new_x=XPos.LEFT, new_y=YPos.NEXT)
    _text(pdf, 7, color=MUTED)
    for text in detail_lines:
        pdf.put(COLUMNS[0] - 2, 3.4, text, new_x=XPos.LEFT, new_y=YPos.NEXT)
    x = LEFT + COLUMNS[0]
    _text(pdf, 8.5)
    for value, width in zip(values, COLUMNS[1:], strict=True):
        pdf.set_xy(x, y + 1.2)
        pdf.put(width, 4.2, value, align="R")
        x += width
    pdf.set_y(y + height)


def _breakdown_and_totals(pdf: _Document) -> None:
    src, lang = pdf.source, pdf.lang
    cur = src.currency
    needed = 8 + 6 * max(len(src.groups), 5)
    if pdf.get_y() + needed > pdf.page_break_trigger:
        pdf.add_page()
    y = pdf.get_y()
    # The VAT breakdown, left.
    widths = (30.0, 14.0, 26.0, 24.0)
    pdf.set_xy(LEFT, y)
    _text(pdf, 8, bold=True, color=ACCENT)
    pdf.put(sum(widths), 5, label(lang, "tax_breakdown"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _text(pdf, 7, bold=True, color=MUTED)
    for title, width in zip((label(lang, "category"), label(lang, "rate"), label(lang, "base"), label(lang, "tax")),
                            widths, strict=True):
        pdf.put(width, 4.5, title, align="L" if width == widths[0] else "R")
    pdf.ln(4.5)
    for group in src.groups:
        _text(pdf, 8)
        name = CATEGORY_NAMES[lang].get(group.category, group.category)
        pdf.put(widths[0], 4.6, f"{group.category} · {name}")
        pdf.put(widths[1], 4.6, "—" if group.category == "O" else f"{number(group.percent, lang)} %", align="R")
        pdf.put(widths[2], 4.6, money(group.net, cur, lang), align="R")
        pdf.put(widths[3], 4.6, money(group.tax, cur, lang), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if group.reason:
            _text(pdf, 6.5, color=MUTED)
            pdf.set_x(LEFT)
            paragraph(pdf, sum(widths), 3.2, reason(lang, group.reason))
    left_end = pdf.get_y()
    # The totals, right.
    x, w = LEFT + WIDTH - 72, 72.0
    rows: list[tuple[str, str, bool]] = []
    if src.discount:
        rows.append((label(lang, "subtotal"), money(src.subtotal, cur, lang), False))
        rows.append((label(lang, "discount"), money(-src.discount, cur, lang), False))
    rows += [(label(lang, "net"), money(src.net, cur, lang), False),
             (label(lang, "total_tax"), money(src.tax, cur, lang), False)]
    if src.kind == CREDIT_NOTE:
        rows.append((label(lang, "credited"), money(src.total, cur, lang), True))
    else:
        rows.append((label(lang, "total"), money(src.total, cur, lang), src.prepaid == 0))
        if src.prepaid:
            rows.append((label(lang, "prepaid"), money(-src.prepaid, cur, lang), False))
            rows.append((label(lang, "amount_due"), money(src.amount_due, cur, lang), True))
    pdf.set_y(y)
    for title, value, strong in rows:
        pdf.set_x(x)
        if strong:
            pdf.set_fill_color(*ACCENT)
            _text(pdf, 10, bold=True, color=(255, 255, 255))
            pdf.put(w - 34, 7.5, f" {title}", fill=True)
            pdf.put(34, 7.5, f"{value} ", align="R", fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        else:
            _text(pdf, 8.5)
            pdf.put(w - 34, 5.5, f" {title}")
            pdf.put(34, 5.5, f"{value} ", align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(max(left_end, pdf.get_y()) + 6)


def _payment_and_mentions(pdf: _Document) -> None:
    s, src, lang = pdf.seller, pdf.source, pdf.lang
    if pdf.get_y() + 40 > pdf.page_break_trigger:
        pdf.add_page()
    pdf.set_draw_color(*RULE)
    pdf.line(LEFT, pdf.get_y(), LEFT + WIDTH, pdf.get_y())
    pdf.ln(3)
    if src.kind != CREDIT_NOTE:
        _text(pdf, 8, bold=True, color=ACCENT)
        pdf.put(WIDTH, 5, label(lang, "payment"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        _text(pdf, 8.5)
        paragraph(pdf, WIDTH, 4.4, label(lang, "payment_terms", days=src.payment_terms_days,
                                         due=day(src.due_on, lang)))
        _text(pdf, 8.5, bold=True)
        paragraph(pdf, WIDTH, 4.4, label(lang, "bank", name=s.name, iban=s.formatted_iban, bic=s.bic,
                                         number=src.number))
        pdf.ln(2)
    _text(pdf, 7, color=MUTED)
    for _code, text in legal_notes(src, s):
        if _code in ("REG", "AAI"):
            continue
        paragraph(pdf, WIDTH, 3.5, text)
    reasons = []
    for group in src.groups:
        if group.reason:
            reasons.append(reason(lang, group.reason))
    for text in dict.fromkeys(reasons):
        paragraph(pdf, WIDTH, 3.5, text)
    if pdf.xml_note:
        paragraph(pdf, WIDTH, 3.5, pdf.xml_note)
