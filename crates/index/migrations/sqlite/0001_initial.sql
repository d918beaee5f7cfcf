-- agora's metadata index, SQLite flavour (keep in step with ../postgres/0001_initial.sql).
-- Times are nanoseconds since the Unix epoch (INTEGER); text compares byte-wise (BINARY), as
-- PostgreSQL's "C" collation does, so both backends order and page alike.

-- One row per stored artifact (.info, .mod, .zip of a module version).
CREATE TABLE artifacts (
    module        TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('info', 'mod', 'zip')),
    size          INTEGER NOT NULL CHECK (size >= 0),
    h1            TEXT,
    stored_at     INTEGER NOT NULL,
    origin        TEXT    NOT NULL CHECK (origin IN ('upstream', 'git', 'unknown')),
    origin_url    TEXT,
    origin_commit TEXT,
    origin_ref    TEXT,
    served_count  INTEGER NOT NULL DEFAULT 0,
    last_served   INTEGER,
    -- The later of stored_at and last_served: the order in which retention evicts.
    last_used     INTEGER NOT NULL,
    PRIMARY KEY (module, version, kind)
) WITHOUT ROWID;

-- Retention walks one kind in last_used order; size makes the walk index-only.
CREATE INDEX artifacts_by_use ON artifacts (kind, last_used, module, version, size);

-- One row per module version: when any of its artifacts was first stored (the feed).
CREATE TABLE versions (
    module       TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    first_stored INTEGER NOT NULL,
    PRIMARY KEY (module, version)
) WITHOUT ROWID;

CREATE INDEX versions_feed ON versions (first_stored, module, version);

-- Versions that must not be served, with why and by whom.
CREATE TABLE quarantines (
    module  TEXT    NOT NULL,
    version TEXT    NOT NULL,
    reason  TEXT    NOT NULL,
    actor   TEXT    NOT NULL,
    since   INTEGER NOT NULL,
    PRIMARY KEY (module, version)
) WITHOUT ROWID;
