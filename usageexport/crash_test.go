package usageexport_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
)

// crashChildEnv makes the test binary act as a metering controller that
// samples hour by hour until killed; see TestMain.
const crashChildEnv = "OUTPOST_USAGE_CRASH_CHILD_DB"

func TestMain(m *testing.M) {
	if url := os.Getenv(crashChildEnv); url != "" {
		os.Exit(crashChild(url, os.Getenv("OUTPOST_USAGE_CRASH_SITE")))
	}
	os.Exit(m.Run())
}

var (
	crashStart = time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC)
	crashEnd   = time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
)

// crashChild samples the ledger at url one simulated hour at a time, as a
// controller whose clock moves on, and exits when it reaches crashEnd.
func crashChild(url, siteID string) int {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	clock := &fakeClock{now: crashStart}
	s := &usageexport.Sampler{Pool: pool, Clock: clock, SiteID: siteID, Outbox: true}
	for !clock.Now().After(crashEnd) {
		if _, err := s.Sample(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		clock.Add(time.Hour)
	}
	return 0
}

// seedTimeline records the same life of three instances in a ledger:
// creations, CPU changes and a deletion across the October/November
// boundary.
func seedTimeline(t *testing.T, pool *pgxpool.Pool) {
	ctx := context.Background()
	clock := newClock("2026-10-20T00:00:00Z")
	l := usageexport.NewLedger(pool, clock)
	at := func(s string) { clock.Set(s) }
	at("2026-10-20T00:00:00Z")
	must(t, l.Observe(ctx, instance(uidA, "a"), shape(2000)))
	at("2026-10-21T10:17:03Z")
	must(t, l.Observe(ctx, instance(uidB, "b"), shape(250)))
	at("2026-10-29T23:59:30Z")
	must(t, l.Observe(ctx, instance(uidA, "a"), shape(4000)))
	at("2026-11-02T07:00:01Z")
	must(t, l.Observe(ctx, instance("0b7a1d1e-0000-4000-8000-00000000000c", "c"), shape(1000)))
	at("2026-11-10T12:30:00Z")
	must(t, l.Deleted(ctx, uidB))
	at("2026-11-15T00:00:00Z")
	must(t, l.Observe(ctx, instance(uidA, "a"), shape(1500)))
}

// TestSamplerKilledAtRandomPointsWritesTheSameRecords kills a sampling
// process with SIGKILL at 20 random points and restarts it each time; the
// records and the export totals must equal those of a run never
// interrupted.
func TestSamplerKilledAtRandomPointsWritesTheSameRecords(t *testing.T) {
	pg := harness.StartPostgres(t)
	key := newKey(t)
	siteID := usageexport.SiteID(key.Public())
	calm, calmURL := newLedgerDB(t, pg)
	crashy, crashyURL := newLedgerDB(t, pg)
	seedTimeline(t, calm)
	seedTimeline(t, crashy)

	child := func(url string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+url, "OUTPOST_USAGE_CRASH_SITE="+siteID)
		cmd.Stderr = os.Stderr
		return cmd
	}
	must(t, child(calmURL).Run())

	rng := rand.New(rand.NewPCG(6, 20))
	kills := 0
	for i := 0; i < 20; i++ {
		cmd := child(crashyURL)
		must(t, cmd.Start())
		time.Sleep(time.Duration(5+rng.IntN(120)) * time.Millisecond)
		if err := cmd.Process.Kill(); err == nil {
			kills++
		}
		cmd.Wait()
	}
	must(t, child(crashyURL).Run())
	t.Logf("killed the sampler %d times mid-run", kills)

	a, b := recordIDs(t, calm), recordIDs(t, crashy)
	if len(a) == 0 || !slices.Equal(a, b) {
		t.Fatalf("uninterrupted run wrote %d records, the killed one %d, and they differ", len(a), len(b))
	}
	var outboxA, outboxB int
	must(t, calm.QueryRow(context.Background(), "SELECT count(*) FROM usage_outbox").Scan(&outboxA))
	must(t, crashy.QueryRow(context.Background(), "SELECT count(*) FROM usage_outbox").Scan(&outboxB))
	if outboxA != len(a) || outboxB != len(b) {
		t.Fatalf("outbox holds %d and %d rows for %d records: a record was written without its outbox row", outboxA, outboxB, len(a))
	}
	clock := newClock("2026-11-25T00:00:00Z")
	for _, month := range []string{"2026-10", "2026-11"} {
		x, y := exportMonth(t, calm, clock, key, month), exportMonth(t, crashy, clock, key, month)
		if x.Payload.Total != y.Payload.Total {
			t.Errorf("%s totals: uninterrupted %+v, killed %+v", month, x.Payload.Total, y.Payload.Total)
		}
	}
}
