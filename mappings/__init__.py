"""Admin-editable mappings between CRM records and billing-engine commands.

It owns the mapping spec format (YAML), its validation against an org's describe
metadata, a closed registry of named transforms (no ``eval``), and the shipped
default mapping files in ``mappings/defaults``. It never imports ``connector`` or
``billing_engine``: the connector hands mapping output to engine services.
"""
