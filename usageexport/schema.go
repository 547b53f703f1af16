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
-- Direct mode: a row per record still to reach the hub, written in the
-- transaction that writes the record.
CREATE TABLE IF NOT EXISTS usage_outbox (
	record_id text PRIMARY KEY REFERENCES usage_records (id),
	queued_at timestamptz NOT NULL DEFAULT now(),
	sent_at   timestamptz
);
CREATE INDEX IF NOT EXISTS usage_outbox_pending ON usage_outbox (record_id) WHERE sent_at IS NULL;
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
