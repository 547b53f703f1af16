package usageexport

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// schemaLockKey is the advisory lock that serialises schema setup, so two
// controllers starting at once on the same controldb do not race.
const schemaLockKey = 0x6f7573616765 // "ousage"

// schema is the ledger's tables in controldb. Every statement is idempotent;
// a later change appends statements that are idempotent too (ADD COLUMN IF
// NOT EXISTS and the like), so EnsureSchema can run on every start.
const schema = `
CREATE TABLE IF NOT EXISTS usage_instances (
	uid        text PRIMARY KEY,
	kind       text NOT NULL,
	namespace  text NOT NULL,
	name       text NOT NULL,
	created_at timestamptz NOT NULL,
	deleted_at timestamptz
);
-- One row per stretch of an instance's life with the same billed shape.
-- sampled_until: every closed hour before it has its records in usage_records.
CREATE TABLE IF NOT EXISTS usage_intervals (
	uid           text NOT NULL REFERENCES usage_instances (uid),
	start_at      timestamptz NOT NULL,
	end_at        timestamptz,
	milli_vcores  bigint NOT NULL,
	memory_bytes  bigint NOT NULL,
	storage_bytes bigint NOT NULL,
	labels        jsonb NOT NULL DEFAULT '{}',
	sampled_until timestamptz NOT NULL,
	PRIMARY KEY (uid, start_at),
	CHECK (end_at IS NULL OR end_at >= start_at)
);
CREATE UNIQUE INDEX IF NOT EXISTS usage_intervals_open ON usage_intervals (uid) WHERE end_at IS NULL;
CREATE TABLE IF NOT EXISTS usage_records (
	id                  text PRIMARY KEY,
	site_id             text NOT NULL,
	uid                 text NOT NULL,
	kind                text NOT NULL,
	namespace           text NOT NULL,
	name                text NOT NULL,
	start_at            timestamptz NOT NULL,
	end_at              timestamptz NOT NULL,
	milli_vcores        bigint NOT NULL,
	memory_bytes        bigint NOT NULL,
	storage_bytes       bigint NOT NULL,
	labels              jsonb NOT NULL,
	milli_vcore_seconds bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_records_start ON usage_records (start_at);
CREATE TABLE IF NOT EXISTS usage_exports (
	payload_sha256 text PRIMARY KEY,
	month          text NOT NULL,
	partial        boolean NOT NULL,
	exported_at    timestamptz NOT NULL,
	records        bigint NOT NULL,
	milli_vcore_seconds bigint NOT NULL
);
-- Small facts about the site's usage: last upload, last hub contact.
CREATE TABLE IF NOT EXISTS usage_state (
	key   text PRIMARY KEY,
	value timestamptz NOT NULL
);
-- The hub's backlog is on the records themselves, whatever the mode was
-- when they were sampled: acked_at is when the hub acknowledged a record,
-- refusal_id the refused batch it was set aside with (see usage_refusals).
ALTER TABLE usage_records ADD COLUMN IF NOT EXISTS acked_at timestamptz;
ALTER TABLE usage_records ADD COLUMN IF NOT EXISTS refusal_id bigint;
CREATE INDEX IF NOT EXISTS usage_records_unacked ON usage_records (uid, start_at, id)
	WHERE acked_at IS NULL AND refusal_id IS NULL;
CREATE INDEX IF NOT EXISTS usage_records_refused ON usage_records (refusal_id) WHERE refusal_id IS NOT NULL;
-- A batch the hub refused with a 4xx: its records wait here, out of the
-- way of the rest, until ` + "`outpost usage retry`" + `.
CREATE TABLE IF NOT EXISTS usage_refusals (
	id         bigserial PRIMARY KEY,
	refused_at timestamptz NOT NULL,
	status     integer NOT NULL,
	reason     text NOT NULL
);
-- last_seen_at: the last time the source still declared the instance;
-- deletion_requested_at: when its deletion was asked for, if the source
-- said so (a deletionTimestamp). The orphan sweep closes an instance the
-- source no longer has at the earlier of the two.
ALTER TABLE usage_instances ADD COLUMN IF NOT EXISTS last_seen_at timestamptz;
ALTER TABLE usage_instances ADD COLUMN IF NOT EXISTS deletion_requested_at timestamptz;
-- The direct-mode outbox of earlier versions: what it says was sent is
-- acknowledged; the rest waits in the records' backlog. It is then gone.
DO $$ BEGIN
	IF to_regclass('usage_outbox') IS NOT NULL THEN
		UPDATE usage_records r SET acked_at = o.sent_at FROM usage_outbox o
			WHERE o.record_id = r.id AND o.sent_at IS NOT NULL AND r.acked_at IS NULL;
		DROP TABLE usage_outbox;
	END IF;
END $$;
`

// EnsureSchema creates the ledger's tables in controldb when they are
// missing. It is safe to run on every start and from several processes.
func EnsureSchema(ctx context.Context, pool *pgxpool.Pool) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(schemaLockKey)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schema)
		return err
	})
	if err != nil {
		return fmt.Errorf("usage ledger schema: %w", err)
	}
	return nil
}
