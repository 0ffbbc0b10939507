-- ml-connector store, PostgreSQL flavour (production). Times are Unix milliseconds.

CREATE TABLE audit_log (
    position     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     TEXT    NOT NULL UNIQUE,
    kind         TEXT    NOT NULL,
    company      TEXT,
    employee     TEXT,
    detail       TEXT    NOT NULL DEFAULT '{}',
    trace_id     TEXT,
    recorded_at  BIGINT  NOT NULL
);
CREATE INDEX audit_log_company_employee ON audit_log (company, employee, position);
CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE employee_links (
    company             TEXT    NOT NULL,
    employee_uuid       TEXT    NOT NULL,
    visma_tenant        TEXT    NOT NULL,
    employee_cd         TEXT    NOT NULL,
    origin              TEXT    NOT NULL,
    last_command_hash   TEXT,
    last_command_seq    BIGINT,
    updated_at          BIGINT  NOT NULL,
    PRIMARY KEY (company, employee_uuid)
);
CREATE UNIQUE INDEX employee_links_cd ON employee_links (visma_tenant, employee_cd);

CREATE TABLE oauth_grants (
    grant_id        TEXT    PRIMARY KEY,
    company         TEXT    NOT NULL,
    access_token    BYTEA   NOT NULL,
    refresh_token   BYTEA   NOT NULL,
    expires_at      BIGINT  NOT NULL,
    version         BIGINT  NOT NULL,
    status          TEXT    NOT NULL,
    status_reason   TEXT,
    refresh_lease_until BIGINT,
    updated_at      BIGINT  NOT NULL
);

CREATE TABLE companies (
    company_uuid           TEXT    PRIMARY KEY,
    name                   TEXT    NOT NULL,
    grant_id               TEXT    NOT NULL,
    visma_tenant           TEXT    NOT NULL,
    mapping_path           TEXT    NOT NULL,
    paused                 BOOLEAN NOT NULL DEFAULT FALSE,
    first_connect_applied  BOOLEAN NOT NULL DEFAULT FALSE,
    last_event_uuid        TEXT,
    created_at             BIGINT  NOT NULL
);

CREATE TABLE webhook_verification_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token        BYTEA   NOT NULL,
    received_at  BIGINT  NOT NULL,
    -- Set by `mlc subscribe` once Gusto confirmed the token: only then does the
    -- gateway trust it as a signing key (an unsigned POST proves nothing).
    verified_at  BIGINT
);
