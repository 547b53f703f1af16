package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/singlehost"
	"github.com/outpostdata/outpost/test/harness"
)

// slotPeriod is the schedule of TestKilledOutpostUpRunsEverySlotOnce:
// a slot at :00 and :30 of every minute.
const (
	slotSchedule = "*/30 * * * * *"
	slotPeriod   = 30 * time.Second
)

// scheduledBackupName is a scheduled full Backup of db, named after its slot.
var scheduledBackupName = regexp.MustCompile(`^backup-(db-full-(\d{8}t\d{6}z))\.yaml$`)

// scheduledSlots returns the slots of db's scheduled Backups, by the
// files the schedule wrote into the manifests directory, and fails the
// test on any scheduled Backup of db that is not named after a slot of
// slotSchedule.
func (s *site) scheduledSlots() []time.Time {
	s.t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.stateDir, "manifests"))
	if err != nil {
		s.t.Fatal(err)
	}
	var slots []time.Time
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "backup-db-") {
			continue
		}
		m := scheduledBackupName.FindStringSubmatch(e.Name())
		if m == nil {
			s.t.Fatalf("scheduled Backup file %s is not named after a slot (db-full-YYYYMMDDtHHMMSSz); log:\n%s", e.Name(), s.log())
		}
		at, err := time.Parse("20060102t150405z", m[2])
		if err != nil {
			s.t.Fatal(err)
		}
		if at.Truncate(slotPeriod) != at {
			s.t.Fatalf("Backup %s is named after %v, not a slot of %q", m[1], at, slotSchedule)
		}
		slots = append(slots, at)
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i].Before(slots[j]) })
	return slots
}

// waitSlotAfter waits for the first scheduled Backup of a slot after
// after and returns its slot.
func (s *site) waitSlotAfter(after time.Time, timeout time.Duration) time.Time {
	s.t.Helper()
	var got time.Time
	deadline := time.Now().Add(timeout)
	for got.IsZero() {
		for _, at := range s.scheduledSlots() {
			if at.After(after) {
				got = at
				break
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no scheduled Backup of a slot after %v within %s; log:\n%s", after, timeout, s.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return got
}

// setLastScheduleTime writes into controldb, while `outpost up` is dead,
// the lastScheduleTime of db's status, as if the status write that
// recorded a later slot had been lost. It returns what was there.
func (s *site) setLastScheduleTime(at time.Time) string {
	s.t.Helper()
	ctx := context.Background()
	db, err := controldb.ConnectLocal(ctx, singlehost.StateDir{Root: s.stateDir}.ControlDB())
	if err != nil {
		s.t.Fatal(err)
	}
	defer db.Close()
	var was string
	if err := db.Pool.QueryRow(ctx, `SELECT coalesce(object #>> '{status,backups,lastScheduleTime}', '')
		FROM objects WHERE kind = 'PostgresInstance' AND namespace = 'default' AND name = 'db'`).Scan(&was); err != nil {
		s.t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE objects SET object = jsonb_set(object, '{status,backups}',
			coalesce(object #> '{status,backups}', '{}') || jsonb_build_object('lastScheduleTime', $1::text))
		WHERE kind = 'PostgresInstance' AND namespace = 'default' AND name = 'db'`, at.UTC().Format(time.RFC3339)); err != nil {
		s.t.Fatal(err)
	}
	return was
}

// TestKilledOutpostUpRunsEverySlotOnce kills the real `outpost up` with
// SIGKILL right after its schedule created a Backup, twice, and checks
// that every slot of the schedule has exactly one Backup, named after the
// slot, and that none is skipped:
//
//   - the first kill comes right after slot S's Backup file appeared; the
//     status that recorded S is then set back to the slot before, as if its
//     write had been lost, and `outpost up` restarts within S. It must find
//     S's Backup made (no second one under another name) and go on to S+1.
//   - the second kill comes right after a later slot's Backup appeared,
//     and `outpost up` stays dead until the next slot has passed. The
//     restart must make that missed slot's Backup, once, and the slot
//     after it too.
//
// The schedule has a slot every 30 s; `outpost up` has no fake clock.
func TestKilledOutpostUpRunsEverySlotOnce(t *testing.T) {
	m := harness.StartMinIO(t)
	s := newSite(t)
	s.start()
	s.writeObjectStore(m, "slots", true)
	s.writeManifest("db.yaml", goodInstance("db")+`  backup:
    objectStore: {name: minio}
    schedule: "`+slotSchedule+`"
    retention: {count: 100}
`)
	s.waitPhase("db", "Running", 3*time.Minute)
	first := s.waitSlotAfter(time.Time{}, 2*time.Minute)

	// Kill 1: right after a slot's Backup appeared, with its status write
	// lost; the restart comes within the slot.
	slot := s.waitSlotAfter(first, 2*slotPeriod)
	s.crash()
	was := s.setLastScheduleTime(slot.Add(-slotPeriod))
	t.Logf("killed after the Backup of slot %v was created; the stored lastScheduleTime was %q", slot, was)
	s.start()
	if restarted := time.Now(); restarted.Before(slot.Add(slotPeriod)) {
		waitFor(t, slotPeriod, "the restarted controller finding the slot's Backup made", func() bool {
			return strings.Contains(s.log(), "scheduled backup already created")
		})
	} else {
		t.Logf("the restart took until %v, past the slot; the lost status write was not replayed within it", restarted)
	}
	next := s.waitSlotAfter(slot, 2*slotPeriod)
	if want := slot.Add(slotPeriod); !next.Equal(want) {
		t.Fatalf("after the restart the next Backup is of slot %v, want %v: slots %v", next, want, s.scheduledSlots())
	}

	// Kill 2: right after a slot's Backup appeared, dead until the next
	// slot has passed.
	slot = s.waitSlotAfter(next, 2*slotPeriod)
	s.crash()
	missed := slot.Add(slotPeriod)
	time.Sleep(time.Until(missed.Add(2 * time.Second)))
	s.start()
	after := s.waitSlotAfter(slot, slotPeriod)
	if !after.Equal(missed) {
		t.Fatalf("the slot missed while outpost up was dead was %v; the restart made the Backup of %v", missed, after)
	}
	last := s.waitSlotAfter(missed, 2*slotPeriod)
	if !last.Equal(missed.Add(slotPeriod)) {
		t.Fatalf("after the missed slot %v the next Backup is of %v, want %v", missed, last, missed.Add(slotPeriod))
	}

	// From the first slot on, every slot has its Backup, and no other
	// scheduled Backup exists (scheduledSlots fails on any not named
	// after a slot).
	slots := s.scheduledSlots()
	var want []time.Time
	for at := first; !at.After(last); at = at.Add(slotPeriod) {
		want = append(want, at)
	}
	if len(slots) != len(want) {
		t.Fatalf("scheduled Backups of slots %v, want one of each slot %v", slots, want)
	}
	for i := range want {
		if !slots[i].Equal(want[i]) {
			t.Fatalf("scheduled Backups of slots %v, want one of each slot %v", slots, want)
		}
	}
	// The Backups are ones the controller ran, not just files: each the
	// controller has seen is in get backups, and none was made twice
	// under another name (all of db's are slot-named files above).
	for _, b := range s.backupStatuses() {
		if b.Phase == "Failed" && !strings.Contains(b.Error, "controller stopped") {
			t.Fatalf("a scheduled Backup failed: %s\n%s", b.Error, s.log())
		}
	}
	st := s.statusOf("pgi", "db")
	backups, _ := st["backups"].(map[string]any)
	if backups == nil || backups["lastScheduleTime"] == nil {
		t.Fatalf("db's status has no backups.lastScheduleTime: %v", st)
	}
}
