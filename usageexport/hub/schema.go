package hub

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// schema is the hub's tables; every statement is idempotent so Open can run
// it on every start.
const schema = `
CREATE TABLE IF NOT EXISTS hub_sites (
	name         text PRIMARY KEY,
	site_id      text NOT NULL UNIQUE,
	public_key   text NOT NULL,
	token_sha256 text NOT NULL UNIQUE,
	created_at   timestamptz NOT NULL DEFAULT now(),
	-- data_until is the newest record end (or export coverage end) the
	-- site has delivered: what its freshness is judged by.
	data_until   timestamptz,
	disabled_at  timestamptz
);
-- Hubs before data_until judged freshness by the time of receipt
-- (last_seen). Once, and in the same transaction, that column is replaced
-- by what the site's records say.
DO $$ BEGIN
	IF EXISTS (SELECT 1 FROM information_schema.columns
	           WHERE table_schema = current_schema() AND table_name = 'hub_sites' AND column_name = 'last_seen') THEN
		ALTER TABLE hub_sites DROP COLUMN last_seen;
		ALTER TABLE hub_sites ADD COLUMN IF NOT EXISTS data_until timestamptz;
		ALTER TABLE hub_sites ADD COLUMN IF NOT EXISTS disabled_at timestamptz;
		UPDATE hub_sites s SET data_until = r.newest
			FROM (SELECT site, max(end_at) AS newest FROM hub_records GROUP BY site) r WHERE r.site = s.name;
	END IF;
END $$;
CREATE TABLE IF NOT EXISTS hub_instances (
	site       text NOT NULL REFERENCES hub_sites (name),
	uid        text NOT NULL,
	kind       text NOT NULL,
	namespace  text NOT NULL,
	name       text NOT NULL,
	created_at timestamptz NOT NULL,
	deleted_at timestamptz,
	PRIMARY KEY (site, uid)
);
CREATE TABLE IF NOT EXISTS hub_records (
	id                  text PRIMARY KEY,
	site                text NOT NULL,
	uid                 text NOT NULL,
	start_at            timestamptz NOT NULL,
	end_at              timestamptz NOT NULL,
	milli_vcores        bigint NOT NULL,
	memory_bytes        bigint NOT NULL,
	storage_bytes       bigint NOT NULL,
	labels              jsonb NOT NULL,
	milli_vcore_seconds bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS hub_records_site_start ON hub_records (site, start_at);
CREATE TABLE IF NOT EXISTS hub_receipts (
	payload_sha256 text PRIMARY KEY,
	site           text NOT NULL REFERENCES hub_sites (name),
	kind           text NOT NULL,
	month          text,
	received_at    timestamptz NOT NULL DEFAULT now(),
	records        bigint NOT NULL,
	new_records    bigint NOT NULL,
	-- previous_sha256 is a monthly export's previousExportSha256: the
	-- chain that shows a month the hub never received.
	previous_sha256 text
);
ALTER TABLE hub_receipts ADD COLUMN IF NOT EXISTS previous_sha256 text;
-- hub_tokens are the tokens that read usage (role read) or also manage
-- the hub (role admin); sites' upload tokens live in hub_sites.
CREATE TABLE IF NOT EXISTS hub_tokens (
	token_sha256 text PRIMARY KEY,
	role         text NOT NULL CHECK (role IN ('read', 'admin')),
	name         text NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT now()
);
`

const schemaLockKey = 0x6f6875622d // "ohub-"

// Open connects to the hub's database and creates its tables if needed.
func Open(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("hub database: %w", err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(schemaLockKey)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schema)
		return err
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("hub database: %w", err)
	}
	return pool, nil
}
