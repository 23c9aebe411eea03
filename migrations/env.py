"""Alembic environment: one history for every billsync table.

Run through ``billsync db upgrade`` (which passes its own connection) or plain
``alembic`` with ``alembic.ini`` (which reads DATABASE_URL through settings).
"""

from alembic import context
from sqlalchemy import pool

from connector.database import load_all_models, make_engine, schema_name_filter

config = context.config
target_metadata = load_all_models().metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url and url != "sqlite://":
        return url
    from connector.settings import load_settings

    return load_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True, include_name=schema_name_filter(connection))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    engine.pool = pool.NullPool(engine.pool._creator)  # one-shot
    with engine.begin() as conn:
        _run(conn)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
