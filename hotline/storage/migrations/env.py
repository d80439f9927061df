"""Alembic environment: runs on the connection Hotline hands it (see hotline.storage.db)."""

from alembic import context

from hotline.storage.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
