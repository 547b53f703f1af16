package usageexport_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
)

const (
	uidA = "0b7a1d1e-0000-4000-8000-00000000000a"
	uidB = "0b7a1d1e-0000-4000-8000-00000000000b"
)

// runScenario plays the same life of two instances across an hour and a
// month boundary; sampleOften samples after every step, as a controller that
// never stopped would, otherwise only at the end, as one that was down.
func runScenario(t *testing.T, pool *pgxpool.Pool, clock *harness.Clock, key usageexport.SigningKey, sampleOften bool) {
	ctx := context.Background()
	ledger := usageexport.NewLedger(pool, clock)
	sampler := &usageexport.Sampler{Pool: pool, Clock: clock, SiteID: usageexport.SiteID(key.Public())}
	step := func(at string, f func()) {
		clock.Set(at)
		f()
		if sampleOften {
			_, err := sampler.Sample(ctx)
			must(t, err)
		}
	}
	step("2026-10-31T22:30:00Z", func() { must(t, ledger.Observe(ctx, instance(uidA, "a"), shape(2000))) })
	step("2026-10-31T23:00:00Z", func() { must(t, ledger.Observe(ctx, instance(uidA, "a"), shape(2000))) })
	step("2026-10-31T23:15:30Z", func() { must(t, ledger.Observe(ctx, instance(uidA, "a"), shape(500))) })
	step("2026-10-31T23:59:59Z", func() { must(t, ledger.Observe(ctx, instance(uidB, "b"), shape(1500))) })
	step("2026-11-01T00:20:00Z", func() { must(t, ledger.Deleted(ctx, uidA)) })
	step("2026-11-01T01:30:00Z", func() { must(t, ledger.Observe(ctx, instance(uidB, "b"), shape(1500))) })
	step("2026-11-01T02:10:00Z", func() {})
	_, err := sampler.Sample(ctx)
	must(t, err)
}

func exportMonth(t *testing.T, pool *pgxpool.Pool, clock *harness.Clock, key usageexport.SigningKey, month string) *usageexport.Verified {
	t.Helper()
	res, err := usageexport.Export(context.Background(), pool, usageexport.ExportOptions{
		Month: month, SiteName: "plant-7", ControllerVersion: "test", Key: key, Clock: clock,
	})
	must(t, err)
	v, err := usageexport.Verify(res.File, usageexport.VerifyOptions{PublicKey: key.Public()})
	if err != nil {
		t.Fatalf("export of %s does not verify: %v", month, err)
	}
	return v
}

func instanceTotal(t *testing.T, v *usageexport.Verified, uid string) int64 {
	for _, tot := range v.Payload.Totals {
		if tot.UID == uid {
			return tot.MilliVCoreSeconds
		}
	}
	return 0
}

func TestMeteringAcrossHourAndMonthBoundariesIsExact(t *testing.T) {
	pg := harness.StartPostgres(t)
	pool, _ := newLedgerDB(t, pg)
	clock := harness.NewClock("2026-10-31T22:00:00Z")
	key := newKey(t)
	runScenario(t, pool, clock, key, true)

	oct := exportMonth(t, pool, clock, key, "2026-10")
	// A: 2 vCores 22:30-23:15:30 (2,730 s), 0.5 vCores 23:15:30-24:00 (2,670 s).
	// B: 1.5 vCores for the last second of October.
	if got, want := instanceTotal(t, oct, uidA), int64(2000*2730+500*2670); got != want {
		t.Errorf("October, instance a: %d milli-vCore-seconds, want %d", got, want)
	}
	if got, want := instanceTotal(t, oct, uidB), int64(1500*1); got != want {
		t.Errorf("October, instance b: %d milli-vCore-seconds, want %d", got, want)
	}
	if got, want := oct.Payload.Total.VCoreHours, "1.887917"; got != want {
		t.Errorf("October total %s vCore-hours, want %s", got, want)
	}
	if oct.Payload.Period.Partial {
		t.Error("October is over but exported as partial")
	}
	// A's records: 22:30-23:00, 23:00-23:15:30, 23:15:30-24:00; B's one.
	if n := len(oct.Payload.Records); n != 4 {
		t.Errorf("October has %d records, want 4", n)
	}

	nov := exportMonth(t, pool, clock, key, "2026-11")
	if !nov.Payload.Period.Partial || nov.Payload.Period.CoveredUntil.Format("15:04") != "02:00" {
		t.Errorf("November should be partial up to 02:00, got partial=%v coveredUntil=%s", nov.Payload.Period.Partial, nov.Payload.Period.CoveredUntil)
	}
	if got, want := instanceTotal(t, nov, uidA), int64(500*1200); got != want {
		t.Errorf("November, deleted instance a: %d, want %d", got, want)
	}
	if got, want := instanceTotal(t, nov, uidB), int64(1500*7200); got != want {
		t.Errorf("November, instance b: %d, want %d", got, want)
	}
	if got, want := nov.Payload.Total.VCoreHours, "3.166667"; got != want {
		t.Errorf("November total %s vCore-hours, want %s", got, want)
	}
	if nov.Payload.PreviousExportSHA256 != oct.PayloadSHA256 {
		t.Error("November's export does not chain to October's")
	}
	var deleted bool
	for _, inst := range nov.Payload.Instances {
		deleted = deleted || (inst.UID == uidA && inst.DeletedAt != nil)
	}
	if !deleted {
		t.Error("the deleted instance is not listed as deleted in November")
	}

	again := exportMonth(t, pool, clock, key, "2026-10")
	if !slices.EqualFunc(again.Payload.Records, oct.Payload.Records, func(a, b usageexport.Record) bool { return a.ID == b.ID }) {
		t.Error("exporting October twice gave different records")
	}
}

func TestControllerThatWasDownWritesTheSameRecords(t *testing.T) {
	pg := harness.StartPostgres(t)
	key := newKey(t)
	often, _ := newLedgerDB(t, pg)
	once, _ := newLedgerDB(t, pg)
	runScenario(t, often, harness.NewClock("2026-10-31T22:00:00Z"), key, true)
	runScenario(t, once, harness.NewClock("2026-10-31T22:00:00Z"), key, false)
	a, b := recordIDs(t, often), recordIDs(t, once)
	if len(a) == 0 || !slices.Equal(a, b) {
		t.Fatalf("sampling at every step wrote %d records, catching up once wrote %d, and they differ", len(a), len(b))
	}
}

func recordIDs(t *testing.T, pool *pgxpool.Pool) []string {
	rows, err := pool.Query(context.Background(), "SELECT id FROM usage_records ORDER BY id")
	must(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	must(t, err)
	return ids
}
