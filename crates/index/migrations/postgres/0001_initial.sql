-- agora's metadata index, PostgreSQL flavour (keep in step with ../sqlite/0001_initial.sql).
-- Times are nanoseconds since the Unix epoch (BIGINT); text is COLLATE "C" (byte order, as
-- SQLite's BINARY), so both backends order and page alike whatever the database's locale.

CREATE TABLE artifacts (
    module        TEXT COLLATE "C" NOT NULL,
    version       TEXT COLLATE "C" NOT NULL,
    kind          TEXT   NOT NULL CHECK (kind IN ('info', 'mod', 'zip')),
    size          BIGINT NOT NULL CHECK (size >= 0),
    h1            TEXT,
    stored_at     BIGINT NOT NULL,
    origin        TEXT   NOT NULL CHECK (origin IN ('upstream', 'git', 'unknown')),
    origin_url    TEXT,
    origin_commit TEXT,
    origin_ref    TEXT,
    served_count  BIGINT NOT NULL DEFAULT 0,
    last_served   BIGINT,
    last_used     BIGINT NOT NULL,
    PRIMARY KEY (module, version, kind)
);

CREATE INDEX artifacts_by_use ON artifacts (kind, last_used, module, version) INCLUDE (size);

CREATE TABLE versions (
    module       TEXT COLLATE "C" NOT NULL,
    version      TEXT COLLATE "C" NOT NULL,
    first_stored BIGINT NOT NULL,
    PRIMARY KEY (module, version)
);

CREATE INDEX versions_feed ON versions (first_stored, module, version);

CREATE TABLE quarantines (
    module  TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    reason  TEXT   NOT NULL,
    actor   TEXT   NOT NULL,
    since   BIGINT NOT NULL,
    PRIMARY KEY (module, version)
);
