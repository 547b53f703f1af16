package localruntime_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/test/harness"
)

// verifyOnce moves the fake clock to the next scheduled verification and
// passes over inst until its result is in the status.
func verifyOnce(t *testing.T, r *controller.BackupReconciler, clock *harness.Clock, inst *outpostv1.PostgresInstance) *outpostv1.VerificationStatus {
	t.Helper()
	clock.Add(10 * time.Minute)
	prev := inst.Status.LastVerification
	deadline := time.Now().Add(3 * time.Minute)
	for {
		r.ObserveInstance(inst)
		if lv := inst.Status.LastVerification; lv != nil && lv != prev {
			return lv
		}
		if time.Now().After(deadline) {
			t.Fatalf("no verification result within 3 minutes; status %+v", inst.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// damage overwrites the object key in the bucket with garbage of the same
// length.
func damage(t *testing.T, m *harness.MinIO, key string) {
	t.Helper()
	ctx := context.Background()
	info, err := m.Client.StatObject(ctx, m.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte{0x5a}, int(info.Size))
	if _, err := m.Client.PutObject(ctx, m.Bucket, key, bytes.NewReader(junk), info.Size, minio.PutObjectOptions{UserMetadata: info.UserMetadata}); err != nil {
		t.Fatal(err)
	}
}

func TestScheduledVerificationRestoresTheNewestBackupAndTurnsRedOnDamage(t *testing.T) {
	s := newSite(t, true)
	inst := newInstance("db")
	withBackup(inst)
	inst.Spec.Backup.Verification = &outpostv1.VerificationPolicy{Schedule: "*/10 * * * *"}
	s.ready(t, inst)
	conn := s.connect(t, inst)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 3000)"); err != nil {
		t.Fatal(err)
	}
	m, _, err := s.rt.RunBackup(ctx, inst, "", func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	switchWAL(t, conn)

	clock := harness.NewClock("2026-11-30T09:00:30Z")
	r := &controller.BackupReconciler{Runner: s.rt, Verifier: s.rt, Events: s.events, Metrics: controller.NewBackupMetrics(), Now: clock.Now}
	r.ObserveInstance(inst) // the first sight only notes the time

	lv := verifyOnce(t, r, clock, inst)
	if lv.Result != outpostv1.VerificationPassed || lv.Backup != m.ID || !lv.Restored || lv.RecoveredTo == nil || lv.Duration == nil || !strings.Contains(lv.Message, "amcheck") {
		t.Fatalf("first verification: %+v", lv)
	}
	t.Logf("verification of %s: %s in %s, recovered to %s", lv.Backup, lv.Message, lv.Duration.Duration, lv.RecoveredTo.UTC())
	if c := condition(inst, outpostv1.ConditionBackupVerified); c.Reason != controller.ReasonVerificationPassed || c.Status != "True" {
		t.Fatalf("BackupVerified after a pass: %+v", c)
	}

	// A WAL segment the backup needs is damaged in the bucket.
	var startSeg string
	if err := conn.QueryRow(ctx, "SELECT pg_walfile_name($1::pg_lsn)", m.StartLSN).Scan(&startSeg); err != nil {
		t.Fatal(err)
	}
	damage(t, s.minio, "default/db/"+m.SystemIdentifier+"/wal/"+startSeg)
	lv = verifyOnce(t, r, clock, inst)
	c := condition(inst, outpostv1.ConditionBackupVerified)
	if lv.Result != outpostv1.VerificationFailed || c.Status != "False" || c.Reason != controller.ReasonVerificationFailed {
		t.Fatalf("after damaging WAL segment %s: lastVerification %+v, condition %+v", startSeg, lv, c)
	}
	t.Logf("damaged WAL: %s", lv.Message)
	if s.events.find("Warning BackupVerificationFailed") == "" {
		t.Fatalf("no Warning event: %v", s.events.all)
	}

	// A new backup verifies again; then one of its base-backup objects is
	// damaged.
	m2, _, err := s.rt.RunBackup(ctx, inst, "", func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	switchWAL(t, conn)
	if lv = verifyOnce(t, r, clock, inst); lv.Result != outpostv1.VerificationPassed || lv.Backup != m2.ID {
		t.Fatalf("verification of the new backup %s: %+v", m2.ID, lv)
	}
	obj := "default/db/" + m2.SystemIdentifier + "/base/" + m2.ID + "/" + m2.Objects[0].Name
	damage(t, s.minio, obj)
	lv = verifyOnce(t, r, clock, inst)
	if lv.Result != outpostv1.VerificationFailed || !strings.Contains(lv.Message, m2.Objects[0].Name) {
		t.Fatalf("after damaging %s: %+v", obj, lv)
	}
	if c := condition(inst, outpostv1.ConditionBackupVerified); c.Reason != controller.ReasonVerificationFailed {
		t.Fatalf("BackupVerified after damage: %+v", c)
	}

	// WAL archived after the newest backup's end is what a point-in-time
	// restore replays: damaged, then missing, verification must fail too,
	// where a restore that stops early would pass.
	m3, _, err := s.rt.RunBackup(ctx, inst, "", func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	after := switchWAL(t, conn)
	newest := switchWAL(t, conn)
	walDir := "default/db/" + m3.SystemIdentifier + "/wal/"
	waitArchived(t, s.minio, walDir+newest)
	if lv = verifyOnce(t, r, clock, inst); lv.Result != outpostv1.VerificationPassed || lv.Backup != m3.ID {
		t.Fatalf("verification of backup %s with its later WAL intact: %+v", m3.ID, lv)
	}
	damage(t, s.minio, walDir+after)
	if lv = verifyOnce(t, r, clock, inst); lv.Result != outpostv1.VerificationFailed || !strings.Contains(lv.Message, after) {
		t.Fatalf("after damaging WAL segment %s, archived after backup %s: %+v", after, m3.ID, lv)
	}
	if err := s.minio.Client.RemoveObject(ctx, s.minio.Bucket, walDir+after, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if lv = verifyOnce(t, r, clock, inst); lv.Result != outpostv1.VerificationFailed || !strings.Contains(lv.Message, "gap") || !strings.Contains(lv.Message, after) {
		t.Fatalf("after deleting WAL segment %s: %+v", after, lv)
	}
	t.Logf("gap: %s", lv.Message)
}

// waitArchived waits until key is in the bucket: wal-push runs when
// PostgreSQL gets to it.
func waitArchived(t *testing.T, m *harness.MinIO, key string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := m.Client.StatObject(context.Background(), m.Bucket, key, minio.StatObjectOptions{}); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not archived within a minute", key)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
