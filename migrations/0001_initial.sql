-- The first schema of sagad (docs/schema.md explains each table).
-- Applied by `sagactl migrate` in one transaction; never edit it once
-- released: add a new NNNN_name.sql instead.

CREATE TABLE saga_definitions (
    name        text        NOT NULL,
    version     integer     NOT NULL CHECK (version >= 1),
    sha256      text        NOT NULL,
    body        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

-- One row per saga. 'state' is the engine's whole document; the other
-- columns repeat parts of it for queries and are written with it.
CREATE TABLE sagas (
    id                  text        PRIMARY KEY,
    type                text        NOT NULL,
    definition_version  integer     NOT NULL,
    definition_sha256   text        NOT NULL,
    status              text        NOT NULL CHECK (status IN
                        ('running', 'compensating', 'completed', 'compensated', 'failed')),
    current_step        text,
    version             bigint      NOT NULL CHECK (version >= 1),
    deadline_at         timestamptz,
    traceparent         text,
    state               jsonb       NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (type, definition_version) REFERENCES saga_definitions (name, version)
);
CREATE INDEX sagas_updated ON sagas (updated_at DESC);
CREATE INDEX sagas_status_updated ON sagas (status, updated_at DESC);
CREATE INDEX sagas_type_updated ON sagas (type, updated_at DESC);
CREATE INDEX sagas_unfinished_updated ON sagas (updated_at)
    WHERE status IN ('running', 'compensating');

-- Append only. seq orders one saga's entries (it is taken after the saga
-- row is locked by the same transaction).
CREATE TABLE saga_history (
    saga_id  text        NOT NULL,
    seq      bigint      GENERATED ALWAYS AS IDENTITY,
    at       timestamptz NOT NULL DEFAULT now(),
    event    text        NOT NULL,
    step     text,
    detail   jsonb,
    PRIMARY KEY (saga_id, seq)
);
CREATE INDEX saga_history_at ON saga_history (at, seq);

CREATE TABLE inbox (
    message_id   text        PRIMARY KEY,
    saga_id      text,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inbox_received ON inbox (received_at);

-- next_attempt_at is both the backoff after a failure and the lease of a
-- claim: a row is ready when it has passed.
CREATE TABLE outbox (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    saga_id          text,
    channel          text        NOT NULL,
    key              text,
    payload          bytea       NOT NULL,
    headers          jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text
);
CREATE INDEX outbox_ready ON outbox (next_attempt_at, id);

-- One timer per saga, kind and step ('' for saga-wide). Arming again gives
-- a new id, so a transition can delete exactly the timer that fired.
CREATE TABLE timers (
    saga_id        text        NOT NULL,
    kind           text        NOT NULL,
    step           text        NOT NULL DEFAULT '',
    attempt        integer     NOT NULL DEFAULT 0,
    due_at         timestamptz NOT NULL,
    id             bigserial   NOT NULL,
    claimed_until  timestamptz,
    PRIMARY KEY (saga_id, kind, step)
);
CREATE INDEX timers_due ON timers (due_at);

CREATE TABLE dead_letters (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    channel      text        NOT NULL,
    key          text,
    raw          bytea       NOT NULL,
    headers      jsonb,
    reason       text        NOT NULL,
    replayed_at  timestamptz
);

-- Raised by the versioned update when the saga moved on; the store maps
-- SQLSTATE SGVER to a version conflict.
CREATE FUNCTION saga_require_version(written bigint, saga text, expected bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    IF written IS NULL THEN
        RAISE EXCEPTION 'saga "%" is no longer at version %', saga, expected
            USING ERRCODE = 'SGVER';
    END IF;
    RETURN written;
END
$$;
