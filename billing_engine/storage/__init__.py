"""Storage of the billing engine: SQLModel tables, column types and repositories.

This is the only part of ``billing_engine`` that may import SQLModel/SQLAlchemy.
"""
