-- Identity and access. Secrets are never stored: only the SHA-256 of each ticket, token
-- and session secret, as 64 lowercase hex digits. Times are INTEGER microseconds since the epoch.
-- Kept to plain, portable SQL; docs/auth.md has the PostgreSQL DDL of the same tables.

-- SOTicket credentials (`7T:...`), issued by POST /api/v1/Ticket.
CREATE TABLE ticket (
    ticket_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    associate_id INTEGER NOT NULL REFERENCES associate (associate_id) ON DELETE CASCADE,
    secret_hash  TEXT    NOT NULL,
    registered   INTEGER NOT NULL,
    expires      INTEGER NOT NULL,
    revoked      INTEGER,
    CONSTRAINT ticket_secret_key UNIQUE (secret_hash)
);
CREATE INDEX ticket_associate ON ticket (associate_id);

-- Bearer API tokens with a scope; `expires` NULL = never.
CREATE TABLE api_token (
    api_token_id INTEGER PRIMARY KEY AUTOINCREMENT,
    associate_id INTEGER NOT NULL REFERENCES associate (associate_id) ON DELETE CASCADE,
    name         TEXT,
    scope        TEXT    NOT NULL CHECK (scope IN ('read', 'write', 'worker', 'admin')),
    secret_hash  TEXT    NOT NULL,
    registered   INTEGER NOT NULL,
    expires      INTEGER,
    revoked      INTEGER,
    CONSTRAINT api_token_secret_key UNIQUE (secret_hash)
);
CREATE INDEX api_token_associate ON api_token (associate_id);

-- Browser sessions (cookie + XSRF-TOKEN).
CREATE TABLE browser_session (
    browser_session_id INTEGER PRIMARY KEY AUTOINCREMENT,
    associate_id       INTEGER NOT NULL REFERENCES associate (associate_id) ON DELETE CASCADE,
    secret_hash        TEXT    NOT NULL,
    registered         INTEGER NOT NULL,
    expires            INTEGER NOT NULL,
    revoked            INTEGER,
    CONSTRAINT browser_session_secret_key UNIQUE (secret_hash)
);
CREATE INDEX browser_session_associate ON browser_session (associate_id);

-- One row per change that must end cached credentials (password, role, active flag, removal,
-- revocation). Servers poll it so that a change made by the CLI, another process, takes effect
-- within the poll interval. Old rows are pruned.
CREATE TABLE credential_change (
    credential_change_id INTEGER PRIMARY KEY AUTOINCREMENT,
    associate_id         INTEGER NOT NULL,
    registered           INTEGER NOT NULL
);
