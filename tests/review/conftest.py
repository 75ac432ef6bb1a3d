import uuid

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def review_db(request, tmp_path):
    """A fresh, empty review database: an SQLite file, or a new database on the session's
    real PostgreSQL server (dropped afterwards)."""
    import sqlalchemy as sa

    from nsclc_engine.review import store

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'review.db'}"
        yield url
        store.dispose(url)
        return
    server = request.getfixturevalue("postgres_url")
    name = f"review_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    url = server.rsplit("/", 1)[0] + f"/{name}"
    yield url
    store.dispose(url)
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE {name}")
    admin.dispose()
