package usageexport_test

import (
	"context"
	"testing"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
)

func TestMonthSummaryAgreesWithTheExportPerInstance(t *testing.T) {
	pg := harness.StartPostgres(t)
	pool, _ := newLedgerDB(t, pg)
	clock := harness.NewClock("2026-10-31T22:00:00Z")
	key := newKey(t)
	runScenario(t, pool, clock, key, true)

	for _, month := range []string{"2026-10", "2026-11"} {
		s, err := usageexport.SummarizeMonth(context.Background(), pool, month)
		must(t, err)
		v := exportMonth(t, pool, clock, key, month)
		if s.Total != v.Payload.Total {
			t.Errorf("%s: summary total %+v, export total %+v", month, s.Total, v.Payload.Total)
		}
		if len(s.Instances) != len(v.Payload.Totals) {
			t.Fatalf("%s: summary lists %d instances, export totals %d", month, len(s.Instances), len(v.Payload.Totals))
		}
		for _, inst := range s.Instances {
			if got, want := inst.MilliVCoreSeconds, instanceTotal(t, v, inst.UID); got != want {
				t.Errorf("%s, %s: summary %d milli-vCore-seconds, export %d", month, inst.Name, got, want)
			}
		}
	}
	// November: a (deleted at 00:20, 0.5 vCores) before b (1.5 vCores).
	s, err := usageexport.SummarizeMonth(context.Background(), pool, "2026-11")
	must(t, err)
	if a := s.Instances[0]; a.Name != "a" || a.DeletedAt == nil || a.MilliVCores != 500 || a.VCoreHours != "0.166667" {
		t.Errorf("November, first row: %+v, want deleted instance a with 0.5 vCores and 0.166667 vCore-hours", a)
	}
	if got := s.RecordedUntil.Format("2006-01-02T15:04"); got != "2026-11-01T02:00" {
		t.Errorf("November recorded until %s, want 2026-11-01T02:00", got)
	}
	if _, err := usageexport.SummarizeMonth(context.Background(), pool, "November"); err == nil {
		t.Error("a month not written YYYY-MM was accepted")
	}
}
