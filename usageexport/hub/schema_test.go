package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport/hub"
)

// TestOpenMigratesAHubThatJudgedByReceipt: a hub database from before
// freshness by data (hub_sites.last_seen, the time of receipt) is
// migrated by Open: last seen becomes the end of the site's newest record,
// and opening again changes nothing.
func TestOpenMigratesAHubThatJudgedByReceipt(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	url := createDB(t, pg, "oldhub")
	conn, err := pgx.Connect(ctx, url)
	must(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `
CREATE TABLE hub_sites (name text PRIMARY KEY, site_id text NOT NULL UNIQUE, public_key text NOT NULL,
	token_sha256 text NOT NULL UNIQUE, created_at timestamptz NOT NULL DEFAULT now(), last_seen timestamptz);
CREATE TABLE hub_records (id text PRIMARY KEY, site text NOT NULL, uid text NOT NULL, start_at timestamptz NOT NULL,
	end_at timestamptz NOT NULL, milli_vcores bigint NOT NULL, memory_bytes bigint NOT NULL, storage_bytes bigint NOT NULL,
	labels jsonb NOT NULL, milli_vcore_seconds bigint NOT NULL);
CREATE TABLE hub_receipts (payload_sha256 text PRIMARY KEY, site text NOT NULL REFERENCES hub_sites (name), kind text NOT NULL,
	month text, received_at timestamptz NOT NULL DEFAULT now(), records bigint NOT NULL, new_records bigint NOT NULL);
INSERT INTO hub_sites (name, site_id, public_key, token_sha256, last_seen) VALUES ('plant', 'id', 'key', 'hash', '2026-12-05T00:30:00Z');
INSERT INTO hub_records VALUES ('r1', 'plant', 'u', '2026-10-31T23:00:00Z', '2026-11-01T00:00:00Z', 1000, 0, 0, '{}', 3600000);`)
	must(t, err)

	for range 2 {
		pool, err := hub.Open(ctx, url)
		must(t, err)
		sites, err := (&hub.Hub{Pool: pool, Now: func() time.Time { return time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC) }}).Sites(ctx)
		pool.Close()
		must(t, err)
		if len(sites) != 1 || sites[0].LastSeen == nil || !sites[0].LastSeen.Equal(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) || sites[0].Status != hub.StatusOverdue {
			t.Fatalf("after Open: %+v, want plant last seen at its newest record's end (2026-11-01), overdue", sites)
		}
	}
}
