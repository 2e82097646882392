"""Create the experiments table."""


def apply(conn, environment):
    conn.sql("""
        CREATE TABLE experiments (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL,
            created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
        );
        CREATE INDEX experiments_title_idx ON experiments (title);
    """).execute()


def rollback(conn, environment):
    conn.sql("DROP TABLE experiments").execute()
