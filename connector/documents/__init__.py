"""Invoice documents: the seller's identity, the PDF and its Factur-X (EN 16931) XML.

``seller.py`` reads the seller's identity from the settings (one line per missing setting);
``cii.py`` builds the CII XML of an invoice or credit note; ``pdf.py`` writes the PDF/A-3 (fpdf2,
fonts embedded, ``fonts.py``) with that XML attached as Factur-X; ``render.py`` turns an engine
document source into the stored files; ``generate.py`` makes them in batches, on one or more
processes; ``push.py`` attaches each PDF to its ``Invoice__c``.
The figures all come from the engine (``billing_engine.use_cases.documents``): nothing here
computes a total. docs/invoices.md says what a document contains.
"""
