-- batchd schema, SQLite dialect. Times are INTEGER microseconds since the Unix epoch, UTC.
-- Table and column names follow SuperOffice's database reference where it has them.

CREATE TABLE associate (
    associate_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('user', 'worker', 'admin')),
    active        INTEGER NOT NULL DEFAULT 1,
    registered    INTEGER NOT NULL,
    updated       INTEGER NOT NULL,
    CONSTRAINT associate_name_key UNIQUE (name COLLATE NOCASE)
);

CREATE TABLE batchtaskdefinition (
    batchtaskdefinition_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name                   TEXT    NOT NULL,
    description            TEXT,
    runner                 TEXT    NOT NULL,
    timeout                INTEGER NOT NULL DEFAULT 0,
    autorestartcount       INTEGER NOT NULL DEFAULT 0,
    startinterval          INTEGER NOT NULL DEFAULT 0,
    cancellation_behaviour INTEGER NOT NULL DEFAULT 0,
    concurrency            INTEGER,
    registered             INTEGER NOT NULL,
    updated                INTEGER NOT NULL,
    CONSTRAINT batchtaskdefinition_name_key UNIQUE (name)
);

CREATE TABLE batchtask (
    batchtask_id           INTEGER PRIMARY KEY AUTOINCREMENT,
    batchtaskdefinition_id INTEGER REFERENCES batchtaskdefinition (batchtaskdefinition_id) ON DELETE SET NULL,
    name                   TEXT    NOT NULL,
    associate_id           INTEGER NOT NULL,
    description            TEXT,
    dbtag                  TEXT,
    state                  INTEGER NOT NULL,
    detailstable           INTEGER NOT NULL DEFAULT 0,
    detailsrecord          INTEGER NOT NULL DEFAULT 0,
    request                TEXT,
    response               TEXT,
    result                 TEXT,
    context                TEXT,
    startcount             INTEGER NOT NULL DEFAULT 0,
    laststarted            INTEGER,
    progresspercent        INTEGER NOT NULL DEFAULT 0,
    progressdescription    TEXT,
    filename               TEXT,
    is_system              INTEGER NOT NULL DEFAULT 0,
    is_internal            INTEGER NOT NULL DEFAULT 0,
    cancellation_behaviour INTEGER NOT NULL DEFAULT 0,
    registered             INTEGER NOT NULL,
    registered_associate_id INTEGER NOT NULL DEFAULT 0,
    updated                INTEGER NOT NULL,
    updated_associate_id   INTEGER NOT NULL DEFAULT 0,
    updatedcount           INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX batchtask_state ON batchtask (state, batchtask_id);
CREATE INDEX batchtask_name_state ON batchtask (name, state);
CREATE INDEX batchtask_associate_state ON batchtask (associate_id, state);
CREATE INDEX batchtask_definition_state ON batchtask (batchtaskdefinition_id, state);
CREATE INDEX batchtask_registered ON batchtask (registered);

CREATE TABLE binaryobject (
    binaryobject_id INTEGER PRIMARY KEY AUTOINCREMENT,
    conceptualtype  TEXT    NOT NULL,
    mimetype        TEXT,
    description     TEXT,
    originalsize    INTEGER NOT NULL,
    blobsize        INTEGER NOT NULL,
    iszipped        INTEGER NOT NULL DEFAULT 0,
    isencrypted     INTEGER NOT NULL DEFAULT 0,
    extrainfo       TEXT,
    binarydata      BLOB,
    registered      INTEGER NOT NULL,
    updated         INTEGER NOT NULL
);

-- ownerrecord points at a row of the table ownertable names, so it can carry no foreign key;
-- the store removes links and blobs with their task.
CREATE TABLE binaryobjectlink (
    binaryobjectlink_id INTEGER PRIMARY KEY AUTOINCREMENT,
    binaryobject_id     INTEGER NOT NULL REFERENCES binaryobject (binaryobject_id) ON DELETE CASCADE,
    ownertable          INTEGER NOT NULL,
    ownerrecord         INTEGER NOT NULL,
    linkcomment         TEXT,
    linktype            INTEGER NOT NULL,
    rank                INTEGER NOT NULL DEFAULT 0,
    registered          INTEGER NOT NULL
);

CREATE INDEX binaryobjectlink_owner ON binaryobjectlink (ownertable, ownerrecord, linktype, rank);
