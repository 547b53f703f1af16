package backup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/outpostdata/outpost/backup"
)

// walObject is the bucket key of an archived segment of m's cluster.
func walObject(m *backup.Manifest, seg string) string {
	return "backups/default/src/" + m.SystemIdentifier + "/wal/" + seg
}

// withChanges writes rows in rounds, each archived in a segment of its
// own, after backup m; it returns the segments, oldest first, that hold
// WAL written after the backup.
func (s *site) withChanges(t *testing.T, m *backup.Manifest, rounds int) []string {
	t.Helper()
	for i := range rounds {
		s.exec(t, fmt.Sprintf("INSERT INTO t SELECT g FROM generate_series(%d, %d) g", i*1000+1, (i+1)*1000))
		s.archiveNow(t)
	}
	stop := queryString(t, s.pg.URL("postgres"), "SELECT pg_walfile_name('"+m.StopLSN+"')")
	var after []string
	for o := range s.minio.Client.ListObjects(context.Background(), s.minio.Bucket, minio.ListObjectsOptions{Prefix: "backups/default/src/" + m.SystemIdentifier + "/wal/", Recursive: true}) {
		if name := filepath.Base(o.Key); len(name) == 24 && name > stop {
			after = append(after, name)
		}
	}
	sort.Strings(after)
	if len(after) < rounds {
		t.Fatalf("only %d segments archived after the backup (%v), want %d", len(after), after, rounds)
	}
	return after
}

// damage replaces an archived object with junk, keeping its metadata (so
// the checksum it carries is the original's).
func (s *site) damage(t *testing.T, key string) {
	t.Helper()
	ctx := context.Background()
	info, err := s.minio.Client.StatObject(ctx, s.minio.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte("damaged "), 4096)
	if _, err := s.minio.Client.PutObject(ctx, s.minio.Bucket, key, bytes.NewReader(junk), int64(len(junk)), minio.PutObjectOptions{UserMetadata: info.UserMetadata}); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreToEndOfWALFailsLoudlyWhenASegmentCannotBeRead(t *testing.T) {
	s := newSite(t, false)
	s.exec(t, "CREATE TABLE t (id int)")
	m := s.backup(t)
	segs := s.withChanges(t, m, 3)
	// Control: the intact archive restores every row.
	r, err := s.restore(t, backup.Keys{}, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, r.URL("postgres"), "SELECT count(*)::text FROM t"); got != "3000" {
		t.Fatalf("intact archive: restored %s rows, want 3000", got)
	}
	r.Stop(context.Background())

	// A MinIO restarted inside a subtest must outlive it.
	parent := t
	fast := func(ac *backup.ArchiveConfig) {
		ac.FetchAttempts, ac.FetchAttemptTimeout = 2, backup.Duration(3*time.Second)
	}
	t.Run("store stopped once WAL replay starts", func(t *testing.T) {
		start := time.Now()
		_, err := s.restoreWith(t, backup.Keys{}, "", time.Time{}, func(ac *backup.ArchiveConfig, o *backup.RestoreOptions) {
			fast(ac)
			o.OnReplay = s.minio.Stop
		})
		s.minio.Start(parent)
		if err == nil || !strings.Contains(err.Error(), "gave up after 2 attempts") || !strings.Contains(err.Error(), "could not restore file") {
			t.Fatalf("restore with the store stopped: %v, want wal-fetch giving up and recovery aborted", err)
		}
		t.Logf("failed after %s: %v", time.Since(start).Round(time.Second), err)
	})
	t.Run("store hanging (SIGSTOP) once WAL replay starts", func(t *testing.T) {
		_, err := s.restoreWith(t, backup.Keys{}, "", time.Time{}, func(ac *backup.ArchiveConfig, o *backup.RestoreOptions) {
			fast(ac)
			o.OnReplay = s.minio.Pause
		})
		s.minio.Resume()
		if err == nil || !strings.Contains(err.Error(), "gave up after 2 attempts") || !strings.Contains(err.Error(), "no answer from the object store within 3s") {
			t.Fatalf("restore with the store hanging: %v, want wal-fetch giving up on the hang and recovery aborted", err)
		}
	})
	t.Run("damaged segment", func(t *testing.T) {
		s.damage(t, walObject(m, segs[0]))
		_, err := s.restore(t, backup.Keys{}, "", time.Time{})
		if err == nil || !strings.Contains(err.Error(), "wal-fetch "+segs[0]) || !strings.Contains(err.Error(), "damaged") {
			t.Fatalf("restore past a damaged segment %s: %v, want a failure naming it", segs[0], err)
		}
	})
}

func TestGapInTheArchiveIsReportedAndCutsARestoreShortLoudly(t *testing.T) {
	s := newSite(t, false)
	s.exec(t, "CREATE TABLE t (id int)")
	m := s.backup(t)
	segs := s.withChanges(t, m, 3)
	ctx := context.Background()
	c, err := backup.CheckContinuity(ctx, s.store, "default", "src", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Control: before the gap the whole archive is reachable.
	if !c.OK() || c.Reachable != c.Newest || c.Newest != segs[len(segs)-1] {
		t.Fatalf("continuity of an intact archive: %+v, want it reaching %s", c, segs[len(segs)-1])
	}
	victim := segs[1]
	if err := s.minio.Client.RemoveObject(ctx, s.minio.Bucket, walObject(m, victim), minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err = backup.CheckContinuity(ctx, s.store, "default", "src", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.OK() || c.MissingCount != 1 || c.Missing[0] != victim || c.Reachable != segs[0] || c.ReachableTime.IsZero() {
		t.Fatalf("continuity with %s deleted: %+v, want that gap and %s as the newest reachable segment", victim, c, segs[0])
	}
	if !strings.Contains(c.String(), victim) {
		t.Fatalf("the report does not name the gap: %s", c)
	}
	_, err = s.restore(t, backup.Keys{}, "", time.Time{})
	if !errors.Is(err, backup.ErrIncompleteRecovery) || !strings.Contains(err.Error(), victim) {
		t.Fatalf("restore to the end of WAL across the gap at %s: %v, want an incomplete recovery naming it", victim, err)
	}
}

func TestRecreatedInstanceArchivesItsOwnWALAndRestoresOnlyItsOwnBackups(t *testing.T) {
	old := newSite(t, false)
	old.exec(t, "CREATE TABLE who AS SELECT 'old'::text AS v")
	oldM := old.backup(t)
	old.archiveNow(t)
	old.pg.Server.Stop(context.Background())

	// The same name, a new cluster: its WAL segments have the old one's
	// names, which used to jam archiving for good.
	cur := newSiteOn(t, old.minio, false)
	cur.exec(t, "CREATE TABLE who AS SELECT 'new'::text AS v")
	cur.archiveNow(t)
	curM := cur.backup(t)
	cur.archiveNow(t)
	if oldM.SystemIdentifier == curM.SystemIdentifier {
		t.Fatal("the two clusters have the same system identifier; the test proves nothing")
	}
	all, err := backup.List(context.Background(), cur.store, "default", "src")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].SystemIdentifier != oldM.SystemIdentifier || all[1].SystemIdentifier != curM.SystemIdentifier {
		t.Fatalf("catalog: %+v, want one backup of each cluster", all)
	}
	r, err := cur.restore(t, backup.Keys{}, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, r.URL("postgres"), "SELECT v FROM who"); got != "new" {
		t.Fatalf("restore of the re-created instance brought back the %q cluster", got)
	}
	// The old cluster's backup, asked for by ID, restores with its own WAL.
	r, err = cur.restore(t, backup.Keys{}, oldM.ID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, r.URL("postgres"), "SELECT v FROM who"); got != "old" {
		t.Fatalf("restore of the old cluster's backup brought back %q", got)
	}
}

// scanBucket reads every object in the bucket but lease and manifests and
// reports how many start with the age header, and how many hold marker
// once zstd-decompressed (a plaintext object compressed hides it from a
// plain byte search).
func scanBucket(t *testing.T, s *site, marker string) (total, ageObjects, marked int) {
	t.Helper()
	ctx := context.Background()
	for o := range s.minio.Client.ListObjects(ctx, s.minio.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if strings.HasSuffix(o.Key, ".json") {
			continue
		}
		obj, err := s.minio.Client.GetObject(ctx, s.minio.Bucket, o.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(obj)
		if err != nil {
			t.Fatal(err)
		}
		total++
		if bytes.HasPrefix(b, []byte("age-encryption.org/v1\n")) {
			ageObjects++
		}
		cmd := exec.Command("zstd", "-dc")
		cmd.Stdin = bytes.NewReader(b)
		if raw, err := cmd.Output(); err == nil && bytes.Contains(raw, []byte(marker)) || bytes.Contains(b, []byte(marker)) {
			marked++
		}
	}
	return total, ageObjects, marked
}

func TestEncryptionIsProvedByTheBucketAndPlantedPlaintextIsRefused(t *testing.T) {
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Fatal("zstd is not installed; the control needs it to decompress plaintext objects")
	}
	const marker = "PLAINTEXT-MARKER-4b1d"
	for _, encrypted := range []bool{false, true} {
		s := newSite(t, encrypted)
		s.exec(t, "CREATE TABLE t (id int, secret text)")
		s.exec(t, "INSERT INTO t SELECT g, $1 FROM generate_series(1, 2000) g", marker)
		s.exec(t, "CHECKPOINT")
		m := s.backup(t)
		s.archiveNow(t)
		total, ageObjects, marked := scanBucket(t, s, marker)
		if !encrypted {
			// Control: the scan finds the marker when nothing encrypts it.
			if marked == 0 || ageObjects != 0 {
				t.Fatalf("unencrypted backup: %d of %d objects hold the marker, %d are age-encrypted; the scan cannot tell", marked, total, ageObjects)
			}
			continue
		}
		if marked != 0 || ageObjects != total || total < 3 {
			t.Fatalf("encrypted backup: %d of %d objects age-encrypted, %d hold the marker", ageObjects, total, marked)
		}

		// Plant the plaintext (compressed, with the right checksum) of a
		// segment the restore needs in place of the encrypted one.
		ctx := context.Background()
		s.exec(t, "INSERT INTO t SELECT g, 'after' FROM generate_series(1, 10) g")
		s.archiveNow(t)
		segs := s.withChanges(t, m, 1)
		victim := segs[0]
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "pg_wal"), 0o700)
		file := filepath.Join(dir, "pg_wal", victim)
		if err := backup.FetchWAL(ctx, s.store, s.keys, "default", "src", m.SystemIdentifier, victim, file); err != nil {
			t.Fatal(err)
		}
		planted := s.cfg
		planted.Prefix = "planted"
		ps, err := backup.Open(ctx, planted)
		if err != nil {
			t.Fatal(err)
		}
		if err := backup.PushWAL(ctx, ps, backup.Keys{}, "default", "src", file); err != nil {
			t.Fatal(err)
		}
		src := minio.CopySrcOptions{Bucket: s.minio.Bucket, Object: "planted/default/src/" + m.SystemIdentifier + "/wal/" + victim}
		if _, err := s.minio.Client.CopyObject(ctx, minio.CopyDestOptions{Bucket: s.minio.Bucket, Object: walObject(m, victim)}, src); err != nil {
			t.Fatal(err)
		}
		_, err = s.restore(t, s.keys, "", time.Time{})
		if err == nil || !strings.Contains(err.Error(), "not encrypted, but an age key is configured") || !strings.Contains(err.Error(), victim) {
			t.Fatalf("restore with planted plaintext %s: %v, want it refused", victim, err)
		}
	}
}

func TestOneWriterPerInstance(t *testing.T) {
	s := newSite(t, false)
	s.exec(t, "CREATE TABLE t AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 100000) g")
	older := s.backup(t)
	ctx := context.Background()
	started, proceed := make(chan struct{}), make(chan struct{})
	type result struct {
		m   *backup.Manifest
		err error
	}
	first := make(chan result, 1)
	go func() {
		once := false
		m, err := backup.Create(ctx, backup.CreateOptions{
			Store: s.store, Namespace: "default", Instance: "src",
			ConnString: s.pg.URL("postgres"), DataDir: s.pg.Server.DataDir, ChunkSize: 1 << 20,
			Progress: func(int64) {
				if !once {
					once = true
					close(started)
					<-proceed
				}
			},
		})
		first <- result{m, err}
	}()
	<-started
	// While the backup holds the lease, a second backup, retention and a
	// delete by hand are each refused.
	if _, err := backup.Create(ctx, backup.CreateOptions{Store: s.store, Namespace: "default", Instance: "src", ConnString: s.pg.URL("postgres"), DataDir: s.pg.Server.DataDir}); !errors.Is(err, backup.ErrBusy) {
		t.Errorf("second backup while one runs: %v, want ErrBusy", err)
	}
	if _, err := backup.ApplyRetention(ctx, s.store, "default", "src", backup.RetentionPolicy{Count: 1}, time.Now()); !errors.Is(err, backup.ErrBusy) {
		t.Errorf("retention while a backup runs: %v, want ErrBusy", err)
	}
	if err := backup.DeleteBackup(ctx, s.store, "default", "src", older.ID); !errors.Is(err, backup.ErrBusy) {
		t.Errorf("delete while a backup runs: %v, want ErrBusy", err)
	}
	close(proceed)
	r := <-first
	if r.err != nil {
		t.Fatal(r.err)
	}
	if v, err := backup.Verify(ctx, s.store, "default", "src", r.m.ID); err != nil || !v.OK {
		t.Fatalf("the backup that ran alone: %+v %v", v, err)
	}
	// The lease is free again; the newest completed backup cannot be
	// deleted, an older one can.
	if err := backup.DeleteBackup(ctx, s.store, "default", "src", r.m.ID); err == nil || !strings.Contains(err.Error(), "newest completed backup") {
		t.Fatalf("deleting the newest backup: %v, want it refused", err)
	}
	if err := backup.DeleteBackup(ctx, s.store, "default", "src", older.ID); err != nil {
		t.Fatal(err)
	}
	all, err := backup.List(ctx, s.store, "default", "src")
	if err != nil || len(all) != 1 || all[0].ID != r.m.ID {
		t.Fatalf("catalog after deleting %s: %+v %v", older.ID, all, err)
	}
}

func TestDamagedManifestIsListedAndSkipped(t *testing.T) {
	s := newSite(t, false)
	s.exec(t, "CREATE TABLE t (id int)")
	a := s.backup(t)
	b := s.backup(t)
	ctx := context.Background()
	key := "backups/default/src/" + b.SystemIdentifier + "/base/" + b.ID + "/manifest.json"
	junk := []byte("{not json")
	if _, err := s.minio.Client.PutObject(ctx, s.minio.Bucket, key, bytes.NewReader(junk), int64(len(junk)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	all, err := backup.List(ctx, s.store, "default", "src")
	if err != nil {
		t.Fatalf("one damaged manifest made the catalog unreadable: %v", err)
	}
	if len(all) != 2 || !all[0].Completed || all[1].Completed || !strings.Contains(all[1].Damaged, "manifest.json") {
		t.Fatalf("catalog: %+v, want %s completed and %s damaged", all, a.ID, b.ID)
	}
	m, err := backup.ChooseBackup(ctx, s.store, "default", "src", "", time.Time{})
	if err != nil || m.ID != a.ID {
		t.Fatalf("restore picks %v (%v), want the intact %s", m, err, a.ID)
	}
}

func TestWALFetchExitCodesTellPostgreSQLToAbortOrEnd(t *testing.T) {
	s := newSite(t, false)
	s.exec(t, "CREATE TABLE t (id int)")
	m := s.backup(t)
	s.archiveNow(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fetch.json")
	ac := &backup.ArchiveConfig{Store: s.cfg, Namespace: "default", Instance: "src", SystemIdentifier: m.SystemIdentifier, FetchAttempts: 2, FetchAttemptTimeout: backup.Duration(2 * time.Second)}
	if err := backup.WriteArchiveConfig(cfg, ac); err != nil {
		t.Fatal(err)
	}
	run := func(seg string) (int, string) {
		out, err := exec.Command(outpostBin, "wal-fetch", "--config", cfg, seg, filepath.Join(dir, "RECOVERYXLOG")).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := run(m.StartWAL); code != 0 {
		t.Fatalf("fetching an archived segment: exit %d: %s", code, out)
	}
	if code, out := run("0000000100000000000000FE"); code != 1 {
		t.Fatalf("fetching a segment that is not archived: exit %d, want 1 (end of archive): %s", code, out)
	}
	s.minio.Stop()
	defer s.minio.Start(t)
	code, out := run(m.StartWAL)
	if code <= 125 || !strings.Contains(out, "gave up after 2 attempts") {
		t.Fatalf("fetching with the store stopped: exit %d, want above 125 (abort recovery): %s", code, out)
	}
}

// Backups made before each cluster had its own directory (manifest format
// 1, directly under NAMESPACE/INSTANCE/base and .../wal) are still listed
// and restored. The old layout is made here by moving a new backup there.
func TestBackupsInTheOldLayoutStillRestore(t *testing.T) {
	s := newSite(t, false)
	s.exec(t, "CREATE TABLE t (id int)")
	m := s.backup(t)
	s.withChanges(t, m, 2)
	ctx := context.Background()
	cluster := "backups/default/src/" + m.SystemIdentifier + "/"
	for o := range s.minio.Client.ListObjects(ctx, s.minio.Bucket, minio.ListObjectsOptions{Prefix: cluster, Recursive: true}) {
		old := "backups/default/src/" + strings.TrimPrefix(o.Key, cluster)
		if strings.HasSuffix(o.Key, "/manifest.json") {
			m.Format = 1
			b, _ := json.Marshal(m)
			if _, err := s.minio.Client.PutObject(ctx, s.minio.Bucket, old, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
				t.Fatal(err)
			}
		} else if _, err := s.minio.Client.CopyObject(ctx, minio.CopyDestOptions{Bucket: s.minio.Bucket, Object: old}, minio.CopySrcOptions{Bucket: s.minio.Bucket, Object: o.Key}); err != nil {
			t.Fatal(err)
		}
		if err := s.minio.Client.RemoveObject(ctx, s.minio.Bucket, o.Key, minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := backup.List(ctx, s.store, "default", "src")
	if err != nil || len(all) != 1 || !all[0].Completed || all[0].SystemIdentifier != m.SystemIdentifier {
		t.Fatalf("catalog of the old layout: %+v %v", all, err)
	}
	if c, err := backup.CheckContinuity(ctx, s.store, "default", "src", m.ID); err != nil || !c.OK() {
		t.Fatalf("continuity in the old layout: %+v %v", c, err)
	}
	r, err := s.restore(t, backup.Keys{}, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, r.URL("postgres"), "SELECT count(*)::text FROM t"); got != "2000" {
		t.Fatalf("restored %s rows from the old layout, want 2000", got)
	}
}
