-- ml-connector store, SQLite flavour (the embedded default). Times are Unix milliseconds.

-- Every transaction, append-only. `position` is the global order; `event_id` makes an
-- append idempotent (a duplicate is ignored, not an error).
CREATE TABLE audit_log (
    position     INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT    NOT NULL UNIQUE,
    kind         TEXT    NOT NULL,
    company      TEXT,
    employee     TEXT,
    detail       TEXT    NOT NULL DEFAULT '{}',
    trace_id     TEXT,
    recorded_at  INTEGER NOT NULL
);
CREATE INDEX audit_log_company_employee ON audit_log (company, employee, position);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- Gusto employee to Visma employee, and what was last applied.
CREATE TABLE employee_links (
    company             TEXT    NOT NULL,
    employee_uuid       TEXT    NOT NULL,
    visma_tenant        TEXT    NOT NULL,
    employee_cd         TEXT    NOT NULL,
    origin              TEXT    NOT NULL,
    last_command_hash   TEXT,
    last_command_seq    INTEGER,
    updated_at          INTEGER NOT NULL,
    PRIMARY KEY (company, employee_uuid)
);
CREATE UNIQUE INDEX employee_links_cd ON employee_links (visma_tenant, employee_cd);

-- OAuth grants; tokens are AES-256-GCM ciphertexts. `version` is the compare-and-swap
-- counter that makes a refresh single-flight across processes.
CREATE TABLE oauth_grants (
    grant_id        TEXT    PRIMARY KEY,
    company         TEXT    NOT NULL,
    access_token    BLOB    NOT NULL,
    refresh_token   BLOB    NOT NULL,
    expires_at      INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    status_reason   TEXT,
    refresh_lease_until INTEGER,
    updated_at      INTEGER NOT NULL
);

-- Companies the connector serves.
CREATE TABLE companies (
    company_uuid           TEXT    PRIMARY KEY,
    name                   TEXT    NOT NULL,
    grant_id               TEXT    NOT NULL,
    visma_tenant           TEXT    NOT NULL,
    mapping_path           TEXT    NOT NULL,
    paused                 INTEGER NOT NULL DEFAULT 0,
    first_connect_applied  INTEGER NOT NULL DEFAULT 0,
    last_event_uuid        TEXT,
    created_at             INTEGER NOT NULL
);

-- Verification tokens Gusto POSTed to the gateway, waiting for `mlc subscribe`.
CREATE TABLE webhook_verification_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    token        BLOB    NOT NULL,
    received_at  INTEGER NOT NULL,
    -- Set by `mlc subscribe` once Gusto confirmed the token: only then does the
    -- gateway trust it as a signing key (an unsigned POST proves nothing).
    verified_at  INTEGER
);
