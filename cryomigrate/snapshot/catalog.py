"""The catalog queries of a schema snapshot, in one place (DESIGN 10.3).

PostgreSQL: schemas, tables, columns (type, nullability, default), constraints, indexes,
views, functions, triggers, sequences, types, extensions, RLS policies and grants, each
query yielding ``key`` (the object, spelled for a person) and its attributes; columns
starting with ``_`` only place a row (``_schema``, ``_table``) and are not compared.
Objects that belong to an extension are the extension's, listed once as the extension.
SQLite: ``sqlite_master``. cryomigrate's own tables, and what hangs on them (indexes,
the journal's sequence, grants, policies), are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cryomigrate.backends import Backend
from cryomigrate.snapshot import Snapshot

_SCHEMA_FILTER = ("n.nspname NOT IN ('pg_catalog', 'information_schema') "
                  r"AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'")


def _not_member(oid: str, catalog: str) -> str:
    return (f"NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.objid = {oid} "
            f"AND e.classid = 'pg_catalog.{catalog}'::pg_catalog.regclass "
            "AND e.deptype = 'e')")


_RELATION = ("FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
             "ON n.oid = c.relnamespace")
_QUALIFIED = "n.nspname || '.' || c.relname"

_PG_QUERIES: dict[str, str] = {
    "schemas": f"""SELECT 'schema ' || n.nspname AS key
        FROM pg_catalog.pg_namespace n WHERE {_SCHEMA_FILTER}
        AND {_not_member('n.oid', 'pg_namespace')}""",
    "tables": f"""SELECT CASE c.relkind WHEN 'p' THEN 'partitioned table '
            WHEN 'f' THEN 'foreign table ' ELSE 'table ' END || {_QUALIFIED} AS key,
        n.nspname AS _schema, c.relname AS _table,
        c.relrowsecurity::text AS row_level_security,
        c.relforcerowsecurity::text AS force_row_level_security
        {_RELATION} WHERE c.relkind IN ('r', 'p', 'f') AND {_SCHEMA_FILTER}
        AND {_not_member('c.oid', 'pg_class')}""",
    "columns": f"""SELECT 'column ' || {_QUALIFIED} || '.' || a.attname AS key,
        n.nspname AS _schema, c.relname AS _table,
        pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
        CASE WHEN a.attnotnull THEN 'not null' ELSE 'null' END AS nullability,
        COALESCE(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '') AS default,
        a.attidentity::text AS identity, a.attgenerated::text AS generated
        {_RELATION} JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
        LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f', 'c')
        AND {_SCHEMA_FILTER} AND {_not_member('c.oid', 'pg_class')}""",
    "constraints": f"""SELECT 'constraint ' || n.nspname || '.'
            || COALESCE(c.relname, t.typname, '') || '.' || k.conname AS key,
        n.nspname AS _schema, c.relname AS _table,
        pg_catalog.pg_get_constraintdef(k.oid) AS definition
        FROM pg_catalog.pg_constraint k
        JOIN pg_catalog.pg_namespace n ON n.oid = k.connamespace
        LEFT JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
        LEFT JOIN pg_catalog.pg_type t ON t.oid = k.contypid
        WHERE {_SCHEMA_FILTER} AND {_not_member('COALESCE(c.oid, t.oid)', 'pg_class')}
        AND {_not_member('COALESCE(t.oid, 0)', 'pg_type')}""",
    "indexes": f"""SELECT 'index ' || {_QUALIFIED} AS key, n.nspname AS _schema,
        t.relname AS _table, pg_catalog.pg_get_indexdef(c.oid) AS definition,
        x.indisvalid::text AS valid
        FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid
        JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE {_SCHEMA_FILTER} AND {_not_member('t.oid', 'pg_class')}""",
    "views": f"""SELECT CASE c.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END
            || {_QUALIFIED} AS key, n.nspname AS _schema, c.relname AS _table,
        pg_catalog.pg_get_viewdef(c.oid, true) AS definition
        {_RELATION} WHERE c.relkind IN ('v', 'm') AND {_SCHEMA_FILTER}
        AND {_not_member('c.oid', 'pg_class')}""",
    "functions": f"""SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' WHEN 'a'
            THEN 'aggregate ' ELSE 'function ' END || n.nspname || '.' || p.proname || '('
            || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')' AS key,
        CASE WHEN p.prokind = 'a' THEN '' ELSE pg_catalog.pg_get_functiondef(p.oid) END
            AS definition
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE {_SCHEMA_FILTER} AND {_not_member('p.oid', 'pg_proc')}""",
    "triggers": f"""SELECT 'trigger ' || {_QUALIFIED} || '.' || g.tgname AS key,
        n.nspname AS _schema, c.relname AS _table,
        pg_catalog.pg_get_triggerdef(g.oid) AS definition, g.tgenabled::text AS enabled
        FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT g.tgisinternal AND {_SCHEMA_FILTER}
        AND {_not_member('c.oid', 'pg_class')}""",
    "sequences": f"""SELECT 'sequence ' || {_QUALIFIED} AS key, n.nspname AS _schema,
        (SELECT o.relname FROM pg_catalog.pg_depend d
            JOIN pg_catalog.pg_class o ON o.oid = d.refobjid
            WHERE d.objid = c.oid AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
            AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
            AND d.deptype IN ('a', 'i') LIMIT 1) AS _table,
        s.seqtypid::pg_catalog.regtype::text AS type, s.seqincrement::text AS increment,
        s.seqstart::text AS start, s.seqmin::text AS min, s.seqmax::text AS max,
        s.seqcycle::text AS cycle
        FROM pg_catalog.pg_sequence s JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE {_SCHEMA_FILTER} AND {_not_member('c.oid', 'pg_class')}""",
    "types": f"""SELECT 'type ' || n.nspname || '.' || t.typname AS key,
        CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'd' THEN 'domain' WHEN 'c' THEN 'composite'
            WHEN 'r' THEN 'range' ELSE 'multirange' END AS kind,
        CASE t.typtype
            WHEN 'e' THEN (SELECT pg_catalog.string_agg(l.enumlabel, ', '
                ORDER BY l.enumsortorder) FROM pg_catalog.pg_enum l WHERE l.enumtypid = t.oid)
            WHEN 'd' THEN pg_catalog.format_type(t.typbasetype, t.typtypmod)
                || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END
                || COALESCE(' default ' || t.typdefault, '')
            ELSE '' END AS definition
        FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
        WHERE (t.typtype IN ('e', 'd', 'r', 'm') OR (t.typtype = 'c' AND (SELECT r.relkind
            FROM pg_catalog.pg_class r WHERE r.oid = t.typrelid) = 'c'))
        AND {_SCHEMA_FILTER} AND {_not_member('t.oid', 'pg_type')}""",
    "extensions": """SELECT 'extension ' || e.extname AS key, e.extversion AS version,
        n.nspname AS schema
        FROM pg_catalog.pg_extension e
        JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace""",
    "policies": """SELECT 'policy ' || schemaname || '.' || tablename || '.' || policyname
            AS key, schemaname AS _schema, tablename AS _table, permissive,
        pg_catalog.array_to_string(roles, ', ') AS roles, cmd AS command,
        COALESCE(qual, '') AS using, COALESCE(with_check, '') AS with_check
        FROM pg_catalog.pg_policies""",
    "grants": f"""SELECT 'grant on ' || g.kind || ' ' || g.name || ' to '
            || CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                ELSE pg_catalog.pg_get_userbyid(g.grantee) END AS key,
        MIN(g._schema) AS _schema, MIN(g._table) AS _table,
        pg_catalog.string_agg(g.privilege_type, ', ' ORDER BY g.privilege_type)
            AS privileges
        FROM (
            SELECT CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view'
                    WHEN 'm' THEN 'view' ELSE 'table' END AS kind,
                {_QUALIFIED} AS name, n.nspname AS _schema, c.relname AS _table,
                a.grantee, a.privilege_type, c.relowner AS owner
            {_RELATION} CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
            WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND {_SCHEMA_FILTER}
            AND {_not_member('c.oid', 'pg_class')}
            UNION ALL
            SELECT 'schema', n.nspname, n.nspname, NULL, a.grantee, a.privilege_type,
                n.nspowner
            FROM pg_catalog.pg_namespace n CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a
            WHERE {_SCHEMA_FILTER}
            UNION ALL
            SELECT 'function', n.nspname || '.' || p.proname || '('
                    || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
                n.nspname, NULL, a.grantee, a.privilege_type, p.proowner
            FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
            WHERE {_SCHEMA_FILTER} AND {_not_member('p.oid', 'pg_proc')}
        ) g WHERE g.grantee <> g.owner
        GROUP BY g.kind, g.name, g.grantee""",
}

_SQLITE_QUERY = ("SELECT type || ' ' || name AS key, tbl_name AS _table, sql "
                 "FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")


def take(backend: Backend, own_tables: Iterable[str]) -> Snapshot:
    """What the database holds now, but for ``own_tables`` (cryomigrate's: names as the
    tracker spells them, schema-qualified or not) and what hangs on them."""
    own = set(own_tables)
    snapshot: Snapshot = {}
    queries = [_SQLITE_QUERY] if backend.dialect == "sqlite" else list(_PG_QUERIES.values())
    for query in queries:
        for row in backend.query(query).data:
            if not _is_own(row, own):
                snapshot[str(row["key"])] = _attributes(row)
    return snapshot


def _is_own(row: dict[str, Any], own: set[str]) -> bool:
    table = row.get("_table")
    if table is None:
        return False
    return table in own or f"{row.get('_schema')}.{table}" in own


def _attributes(row: dict[str, Any]) -> dict[str, str]:
    values = {key: "" if value is None else str(value) for key, value in row.items()
              if key != "key" and not key.startswith("_")}
    if "sql" in values:  # SQLite keeps the text as written: compare it modulo spacing
        values["sql"] = " ".join(values["sql"].split())
    return values


# Indexes a failed CREATE INDEX CONCURRENTLY left behind: marked invalid, and no build of
# one is in progress on their table (another session's build is invalid until it ends).
_INVALID_INDEXES = """SELECT pg_catalog.quote_ident(n.nspname) || '.'
        || pg_catalog.quote_ident(c.relname) AS name
    FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE NOT x.indisvalid AND NOT EXISTS (SELECT 1 FROM
        pg_catalog.pg_stat_progress_create_index p WHERE p.relid = x.indrelid)
    ORDER BY 1"""


def invalid_indexes(backend: Backend) -> list[str]:
    """The INVALID indexes of a PostgreSQL database, schema-qualified and quoted."""
    if backend.dialect != "postgresql":
        return []
    return [str(row["name"]) for row in backend.query(_INVALID_INDEXES).data]
