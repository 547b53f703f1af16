package backup_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/test/harness"
)

var outpostBin string

func TestMain(m *testing.M) { harness.RunWithOutpost(m, &outpostBin) }

// site is a running PostgreSQL 15 that archives WAL with `outpost wal-push`
// into a real MinIO.
type site struct {
	minio  *harness.MinIO
	pg     *harness.Postgres
	store  *backup.Store
	keys   backup.Keys
	config string // backup.json
	dir    string
	cfg    backup.StoreConfig
}

func newSite(t *testing.T, encrypted bool) *site {
	t.Helper()
	return newSiteOn(t, harness.StartMinIO(t), encrypted)
}

// newSiteOn is newSite with a given MinIO; one with TLS is trusted through
// the store's CA bundle.
func newSiteOn(t *testing.T, m *harness.MinIO, encrypted bool) *site {
	t.Helper()
	ctx := context.Background()
	s := &site{minio: m, pg: harness.StartPostgres(t), dir: harness.TempDir(t)}
	s.cfg = backup.StoreConfig{Endpoint: s.minio.URL(), Bucket: s.minio.Bucket, Prefix: "backups", AccessKey: s.minio.AccessKey, SecretKey: s.minio.SecretKey, CAFile: s.minio.CAFile}
	var err error
	if s.store, err = backup.Open(ctx, s.cfg); err != nil {
		t.Fatal(err)
	}
	ac := &backup.ArchiveConfig{Store: s.cfg, Namespace: "default", Instance: "src"}
	if encrypted {
		key, err := backup.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		ac.KeyFile = filepath.Join(s.dir, "age.key")
		if err := os.WriteFile(ac.KeyFile, []byte(key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if s.keys, err = backup.ReadKeyFile(ac.KeyFile); err != nil {
			t.Fatal(err)
		}
		if err := postgres.OwnByServer(ac.KeyFile); err != nil {
			t.Fatal(err)
		}
	}
	s.config = filepath.Join(s.dir, "backup.json")
	if err := backup.WriteArchiveConfig(s.config, ac); err != nil {
		t.Fatal(err)
	}
	if err := postgres.OwnByServer(s.config); err != nil {
		t.Fatal(err)
	}
	srv := s.pg.Server
	srv.ManagedSettings = backup.ArchiveSettings(outpostBin, s.config)
	if err := srv.WriteConfig(map[string]string{"fsync": "off"}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *site) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	conn := s.pg.Connect(t, "postgres")
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (s *site) backup(t *testing.T) *backup.Manifest {
	t.Helper()
	m, err := backup.Create(context.Background(), backup.CreateOptions{
		Store: s.store, Namespace: "default", Instance: "src",
		ConnString: s.pg.URL("postgres"), DataDir: s.pg.Server.DataDir, Keys: s.keys,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// archiveNow switches to a new WAL segment and waits until the old one is
// archived, so everything committed so far can be restored.
func (s *site) archiveNow(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	conn := s.pg.Connect(t, "postgres")
	var seg string
	if err := conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var last string
		var failed string
		if err := conn.QueryRow(ctx, "SELECT coalesce(last_archived_wal, ''), coalesce(last_failed_wal, '') FROM pg_stat_archiver").Scan(&last, &failed); err != nil {
			t.Fatal(err)
		}
		if last >= seg {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %s not archived within a minute (last archived %q, last failed %q); log:\n%s", seg, last, failed, tailFile(s.pg.Server.DataDir+".log"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tailFile(p string) string {
	b, _ := os.ReadFile(p)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// restore creates a new server from the source's backups and starts it.
func (s *site) restore(t *testing.T, keys backup.Keys, id string, target time.Time) (*postgres.Server, error) {
	t.Helper()
	return s.restoreWith(t, keys, id, target, nil)
}

// restoreWith is restore with the archive configuration changed by tweak,
// if set.
func (s *site) restoreWith(t *testing.T, keys backup.Keys, id string, target time.Time, tweak func(*backup.ArchiveConfig, *backup.RestoreOptions)) (*postgres.Server, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := harness.TempDir(t)
	srv := &postgres.Server{DataDir: filepath.Join(dir, "data"), Port: harness.FreePort(t), Password: postgres.GeneratePassword()}
	cfg := filepath.Join(dir, "restore.json")
	ac := &backup.ArchiveConfig{Store: s.cfg, Namespace: "default", Instance: "src"}
	if keys.Encrypted() {
		ac.KeyFile = filepath.Join(s.dir, "age.key")
	}
	opts := backup.RestoreOptions{Namespace: "default", Instance: "src", BackupID: id, TargetTime: target}
	if tweak != nil {
		tweak(ac, &opts)
	}
	if err := backup.WriteArchiveConfig(cfg, ac); err != nil {
		t.Fatal(err)
	}
	err := backup.RestoreInto(ctx, srv, s.store, keys, opts, outpostBin, cfg, harness.Logger(t))
	if err != nil {
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(context.Background()) })
	return srv, nil
}

func queryString(t *testing.T, url, sql string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestBackupUnderWriteLoadRestoresToEndOfWAL(t *testing.T) {
	s := newSite(t, false)
	pgbench := harness.SystemBinary(t, "pgbench")
	url := s.pg.URL("postgres")
	if out, err := exec.Command(pgbench, "-i", "-s", "3", "-q", url).CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	// pgbench writes during the whole backup.
	load := exec.Command(pgbench, "-c", "2", "-T", "600", "-n", url)
	var loadOut bytes.Buffer
	load.Stdout, load.Stderr = &loadOut, &loadOut
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	loadDone := make(chan struct{})
	go func() { load.Wait(); close(loadDone) }()
	t.Cleanup(func() { load.Process.Kill(); <-loadDone })
	history := func() string { return queryString(t, url, "SELECT count(*)::text FROM pgbench_history") }
	for deadline := time.Now().Add(time.Minute); history() == "0"; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pgbench made no transactions: %s", loadOut.String())
		}
	}
	before := history()
	m := s.backup(t)
	during := history()
	load.Process.Kill()
	<-loadDone
	if during == before {
		t.Fatalf("pgbench made no progress during the backup (%s transactions before and after): writes were blocked", before)
	}
	// A backend whose client was killed may still commit the transaction
	// it was ending; that commit must come before the WAL switch, or the
	// checksums below see a row the archive does not hold.
	for deadline := time.Now().Add(time.Minute); queryString(t, url, "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'pgbench'") != "0"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("pgbench's backends are still there a minute after it was killed")
		}
	}
	s.archiveNow(t)
	sums := make([]string, 0, 4)
	for _, table := range []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"} {
		sums = append(sums, "(SELECT count(*)::text || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM "+table+" x)")
	}
	checksums := "SELECT " + strings.Join(sums, " || ' ' || ")
	want := queryString(t, url, checksums)

	if m.StopLSN == "" || len(m.Objects) == 0 || m.StoredBytes >= m.SourceBytes {
		t.Fatalf("manifest looks wrong: %+v", m)
	}
	restored, err := s.restore(t, backup.Keys{}, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, restored.URL("postgres"), checksums); got != want {
		t.Fatalf("restored pgbench tables differ: got %s, want %s", got, want)
	}
}

func TestPointInTimeRecoveryStopsAtTheTargetTime(t *testing.T) {
	s := newSite(t, false)
	s.exec(t, "CREATE TABLE t (id bigserial PRIMARY KEY, phase int)")
	s.exec(t, "INSERT INTO t (phase) SELECT 1 FROM generate_series(1, 1000)")
	s.backup(t)
	s.exec(t, "INSERT INTO t (phase) SELECT 2 FROM generate_series(1, 1000)")
	time.Sleep(500 * time.Millisecond)
	target, err := time.Parse(time.RFC3339Nano, queryString(t, s.pg.URL("postgres"), "SELECT to_json(clock_timestamp())#>>'{}'"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	s.exec(t, "INSERT INTO t (phase) SELECT 3 FROM generate_series(1, 1000)")
	s.archiveNow(t)

	restored, err := s.restore(t, backup.Keys{}, "", target)
	if err != nil {
		t.Fatal(err)
	}
	got := queryString(t, restored.URL("postgres"), "SELECT string_agg(phase || '=' || n, ',' ORDER BY phase) FROM (SELECT phase, count(*) n FROM t GROUP BY phase) x")
	if got != "1=1000,2=1000" {
		t.Fatalf("rows by phase after PITR: %s, want 1=1000,2=1000", got)
	}
	// The restored server is writable: it was promoted.
	if _, err := pgx.Connect(context.Background(), restored.URL("postgres")); err != nil {
		t.Fatal(err)
	}
}

func TestTargetTimeBeforeFirstBackupIsRefusedWithTheEarliestTime(t *testing.T) {
	s := newSite(t, false)
	m := s.backup(t)
	_, err := backup.ChooseBackup(context.Background(), s.store, "default", "src", "", m.StartTime.Add(-time.Hour))
	if err == nil || !strings.Contains(err.Error(), "earliest time a restore can target is "+m.StopTime.UTC().Format(time.RFC3339Nano)) {
		t.Fatalf("error = %v, want the earliest time %s", err, m.StopTime.UTC().Format(time.RFC3339Nano))
	}
}

func TestEncryptedBackupNeedsTheKey(t *testing.T) {
	s := newSite(t, true)
	const marker = "PLAINTEXT-MARKER-7f3a9c"
	s.exec(t, "CREATE TABLE t (id bigserial PRIMARY KEY, secret text)")
	s.exec(t, "INSERT INTO t (secret) SELECT $1 || g FROM generate_series(1, 2000) g", marker)
	s.exec(t, "CHECKPOINT")
	m := s.backup(t)
	s.archiveNow(t)
	if !m.Encrypted {
		t.Fatal("manifest says not encrypted")
	}
	// What the bucket holds is checked, with a control, by
	// TestEncryptionIsProvedByTheBucketAndPlantedPlaintextIsRefused.
	if _, err := s.restore(t, backup.Keys{}, "", time.Time{}); err == nil || !strings.Contains(err.Error(), "encrypted with age and no key was given") {
		t.Fatalf("restore without the key: %v, want a message that the key is missing", err)
	}
	restored, err := s.restore(t, s.keys, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, restored.URL("postgres"), "SELECT count(*)::text FROM t WHERE secret LIKE 'PLAINTEXT-MARKER%'"); got != "2000" {
		t.Fatalf("restored %s marker rows, want 2000", got)
	}
}

func TestWALPushIsIdempotentAndRefusesADifferentSegment(t *testing.T) {
	m := harness.StartMinIO(t)
	ctx := context.Background()
	st, err := backup.Open(ctx, backup.StoreConfig{Endpoint: m.URL(), Bucket: m.Bucket, AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	seg := filepath.Join(dir, "000000010000000000000003")
	data := fakeSegment(7000000000000000001)
	os.WriteFile(seg, data, 0o600)
	for i := range 2 {
		if err := backup.PushWAL(ctx, st, backup.Keys{}, "default", "src", seg); err != nil {
			t.Fatalf("push %d: %v", i+1, err)
		}
	}
	os.WriteFile(seg, append(data[:len(data)-1:len(data)-1], 'X'), 0o600)
	err = backup.PushWAL(ctx, st, backup.Keys{}, "default", "src", seg)
	if !errors.Is(err, backup.ErrSegmentConflict) {
		t.Fatalf("pushing a different segment under the same name: %v, want ErrSegmentConflict", err)
	}
	dest := filepath.Join(dir, "fetched")
	if err := backup.FetchWAL(ctx, st, backup.Keys{}, "default", "src", "7000000000000000001", "000000010000000000000003", dest); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
		t.Fatal("fetched segment differs from the first one pushed")
	}
	if err := backup.FetchWAL(ctx, st, backup.Keys{}, "default", "src", "7000000000000000001", "000000010000000000000004", dest); !errors.Is(err, backup.ErrNotFound) {
		t.Fatalf("fetching a missing segment: %v, want ErrNotFound", err)
	}
}

// fakeSegment is 3 MiB that start like a WAL segment of cluster sysid: a
// long page header (XLP_LONG_HEADER in xlp_info) with xlp_sysid at byte 24.
func fakeSegment(sysid uint64) []byte {
	data := bytes.Repeat([]byte("wal"), 1<<20)
	binary.LittleEndian.PutUint16(data[2:4], 0x0002)
	binary.LittleEndian.PutUint64(data[24:32], sysid)
	return data
}

func TestVerifyDetectsATamperedObject(t *testing.T) {
	s := newSite(t, false)
	s.exec(t, "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 10000) g")
	m := s.backup(t)
	ctx := context.Background()
	res, err := backup.Verify(ctx, s.store, "default", "src", m.ID)
	if err != nil || !res.OK {
		t.Fatalf("verify of an intact backup: %+v, %v", res, err)
	}
	key := "backups/default/src/" + m.SystemIdentifier + "/base/" + m.ID + "/" + m.Objects[0].Name
	junk := []byte("tampered")
	if _, err := s.minio.Client.PutObject(ctx, s.minio.Bucket, key, bytes.NewReader(junk), int64(len(junk)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = backup.Verify(ctx, s.store, "default", "src", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || !strings.Contains(strings.Join(res.Errors, "\n"), "checksum mismatch") {
		t.Fatalf("verify of a tampered backup: %+v, want a checksum mismatch", res)
	}
}

func TestInterruptedBackupIsNeverCompletedAndTheNextOneSucceeds(t *testing.T) {
	s := newSite(t, false)
	s.exec(t, "CREATE TABLE t AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 200000) g")
	ctx, cancel := context.WithCancel(context.Background())
	var read atomic.Int64
	_, err := backup.Create(ctx, backup.CreateOptions{
		Store: s.store, Namespace: "default", Instance: "src",
		ConnString: s.pg.URL("postgres"), DataDir: s.pg.Server.DataDir, ChunkSize: 1 << 20,
		Progress: func(n int64) {
			if read.Swap(n) < 4<<20 && n >= 4<<20 {
				cancel()
			}
		},
	})
	if err == nil {
		t.Fatal("a cancelled backup reported success")
	}
	all, err := backup.List(context.Background(), s.store, "default", "src")
	if err != nil {
		t.Fatal(err)
	}
	// Objects uploaded before the interruption may remain, but without a
	// manifest they never count as a completed backup.
	if len(all) > 1 || (len(all) == 1 && all[0].Completed) {
		t.Fatalf("after the interrupted backup the catalog holds %+v, want at most one incomplete backup", all)
	}
	leftover := len(all)
	m := s.backup(t)
	all, _ = backup.List(context.Background(), s.store, "default", "src")
	if len(all) != leftover+1 || !all[len(all)-1].Completed || all[len(all)-1].ID != m.ID {
		t.Fatalf("catalog after the next backup: %+v", all)
	}
	// Retention cleans up the interrupted one.
	res, err := backup.ApplyRetention(context.Background(), s.store, "default", "src", backup.RetentionPolicy{Count: 5}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.DeletedBackups) != leftover {
		t.Fatalf("retention deleted %v, want the interrupted backup's leftovers (%d)", res.DeletedBackups, leftover)
	}
}

func TestRetentionKeepsTheNewestAndDeletesOldBackupsAndTheirWAL(t *testing.T) {
	s := newSite(t, false)
	s.exec(t, "CREATE TABLE t (id int)")
	var ms []*backup.Manifest
	for i := range 3 {
		s.exec(t, "INSERT INTO t SELECT generate_series(1, 1000)")
		ms = append(ms, s.backup(t))
		_ = i
	}
	s.archiveNow(t)
	ctx := context.Background()
	res, err := backup.ApplyRetention(ctx, s.store, "default", "src", backup.RetentionPolicy{Count: 1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.DeletedBackups) != 2 || len(res.Kept) != 1 || res.Kept[0] != ms[2].ID || res.DeletedWAL == 0 {
		t.Fatalf("retention by count 1: %+v", res)
	}
	// A window that has passed for every backup still keeps the newest.
	res, err = backup.ApplyRetention(ctx, s.store, "default", "src", backup.RetentionPolicy{Window: time.Hour}, time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Kept) != 1 || res.Kept[0] != ms[2].ID {
		t.Fatalf("retention by an expired window: %+v", res)
	}
	if v, err := backup.Verify(ctx, s.store, "default", "src", ms[2].ID); err != nil || !v.OK {
		t.Fatalf("the kept backup no longer verifies: %+v %v", v, err)
	}
	restored, err := s.restore(t, backup.Keys{}, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, restored.URL("postgres"), "SELECT count(*)::text FROM t"); got != "3000" {
		t.Fatalf("restored %s rows, want 3000", got)
	}
}

func TestObjectStoreErrorsSayWhatIsWrong(t *testing.T) {
	m := harness.StartMinIO(t)
	ctx := context.Background()
	_, err := backup.Open(ctx, backup.StoreConfig{Endpoint: m.URL(), Bucket: "no-such-bucket", AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	if err == nil || !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist`) {
		t.Fatalf("missing bucket: %v", err)
	}
	if _, err := backup.Open(ctx, backup.StoreConfig{Endpoint: m.URL(), Bucket: "made-for-us", AccessKey: m.AccessKey, SecretKey: m.SecretKey, CreateBucket: true}); err != nil {
		t.Fatalf("createBucket: %v", err)
	}
	_, err = backup.Open(ctx, backup.StoreConfig{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", harness.FreePort(t)), Bucket: "b-b-b", AccessKey: "a", SecretKey: "b"})
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("unreachable store: %v", err)
	}
}

// tableSum is a checksum of table t with its row count, to compare a source
// with its restore.
const tableSum = "SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '') FROM t"

func TestBackupAndRestoreOverTLSTrustTheStoresCABundle(t *testing.T) {
	s := newSiteOn(t, harness.StartMinIOTLS(t), false)
	s.exec(t, "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")
	want := queryString(t, s.pg.URL("postgres"), tableSum)
	m := s.backup(t)
	s.archiveNow(t)
	if v, err := backup.Verify(context.Background(), s.store, "default", "src", m.ID); err != nil || !v.OK {
		t.Fatalf("verify over TLS: %+v %v", v, err)
	}
	restored, err := s.restore(t, backup.Keys{}, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, restored.URL("postgres"), tableSum); got != want {
		t.Fatalf("restored over TLS: %s, want %s", got, want)
	}

	// Without the CA bundle the store is refused, and the message says it
	// is the object store's certificate and what to do.
	noCA := s.cfg
	noCA.CAFile = ""
	_, err = backup.Open(context.Background(), noCA)
	if err == nil || !strings.Contains(err.Error(), "object store "+s.minio.URL()) || !strings.Contains(err.Error(), "TLS certificate is not trusted") || !strings.Contains(err.Error(), "CA bundle") {
		t.Fatalf("store without its CA: %v, want a message naming the object store and its untrusted TLS certificate", err)
	}
	// A bundle with some other CA is refused too, naming the bundle.
	other := filepath.Join(s.dir, "other-ca.crt")
	if err := os.WriteFile(other, harness.StartMinIOTLS(t).CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	noCA.CAFile = other
	if _, err = backup.Open(context.Background(), noCA); err == nil || !strings.Contains(err.Error(), "not signed by the CA bundle "+other) {
		t.Fatalf("store with another CA: %v", err)
	}
}

// Objects much smaller than the files, and of a size that is no multiple of
// tar's 512-byte blocks, put headers and file data across object
// boundaries; the restore must put every byte back where it was.
func TestFilesSplitAcrossManySmallObjectsRestoreExactly(t *testing.T) {
	s := newSite(t, false)
	s.exec(t, "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v, repeat(md5(g::text), 8) AS w FROM generate_series(1, 40000) g")
	want := queryString(t, s.pg.URL("postgres"), tableSum)
	m, err := backup.Create(context.Background(), backup.CreateOptions{
		Store: s.store, Namespace: "default", Instance: "src",
		ConnString: s.pg.URL("postgres"), DataDir: s.pg.Server.DataDir, ChunkSize: 100_003, Concurrency: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Objects) < 100 {
		t.Fatalf("backup of %d bytes made only %d objects of 100003 bytes", m.SourceBytes, len(m.Objects))
	}
	s.archiveNow(t)
	restored, err := s.restore(t, backup.Keys{}, m.ID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, restored.URL("postgres"), tableSum); got != want {
		t.Fatalf("restored table: %s, want %s", got, want)
	}
}

func TestObjectStoreOutageKeepsWALAndArchivingCatchesUp(t *testing.T) {
	s := newSite(t, false)
	ctx := context.Background()
	s.exec(t, "CREATE TABLE t (id bigserial PRIMARY KEY, phase int)")
	s.exec(t, "INSERT INTO t (phase) SELECT 1 FROM generate_series(1, 1000)")
	s.backup(t)
	conn := s.pg.Connect(t, "postgres")
	clock := func() time.Time {
		t.Helper()
		at, err := time.Parse(time.RFC3339Nano, queryString(t, s.pg.URL("postgres"), "SELECT to_json(clock_timestamp())#>>'{}'"))
		if err != nil {
			t.Fatal(err)
		}
		return at
	}

	// MinIO goes away under write load: every few hundred rows a segment
	// is finished and handed to wal-push.
	s.minio.Stop()
	var kept []string
	for i := 0; i < 5; i++ {
		s.exec(t, "INSERT INTO t (phase) SELECT 2 FROM generate_series(1, 200)")
		var seg string
		if err := conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, seg)
	}
	time.Sleep(300 * time.Millisecond)
	inside := clock()
	time.Sleep(300 * time.Millisecond)
	s.exec(t, "INSERT INTO t (phase) SELECT 3 FROM generate_series(1, 1000)")
	if _, err := conn.Exec(ctx, "SELECT pg_switch_wal()"); err != nil {
		t.Fatal(err)
	}
	var failed string
	for deadline := time.Now().Add(time.Minute); failed == ""; time.Sleep(200 * time.Millisecond) {
		if err := conn.QueryRow(ctx, "SELECT coalesce(last_failed_wal, '') FROM pg_stat_archiver").Scan(&failed); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("wal-push did not fail during the outage; log:\n%s", tailFile(s.pg.Server.DataDir+".log"))
		}
	}
	for _, seg := range kept {
		if _, err := os.Stat(filepath.Join(s.pg.Server.DataDir, "pg_wal", seg)); err != nil {
			t.Fatalf("PostgreSQL did not keep segment %s while archiving failed: %v", seg, err)
		}
	}
	if err := s.pg.Server.Ping(ctx); err != nil {
		t.Fatalf("the server stopped answering during the outage: %v", err)
	}
	// A backup attempted during the outage fails and says why.
	if _, err := backup.Create(ctx, backup.CreateOptions{
		Store: s.store, Namespace: "default", Instance: "src",
		ConnString: s.pg.URL("postgres"), DataDir: s.pg.Server.DataDir, StopTimeout: 3 * time.Second,
	}); err == nil {
		t.Fatal("a backup during the outage succeeded")
	}

	// MinIO is back: archiving catches up without help, and a restore to
	// a time inside the outage finds exactly what was committed by then.
	s.minio.Start(t)
	s.archiveNow(t)
	var lastFailed, lastArchived string
	if err := conn.QueryRow(ctx, "SELECT coalesce(last_archived_wal, ''), coalesce(last_failed_wal, '') FROM pg_stat_archiver").Scan(&lastArchived, &lastFailed); err != nil {
		t.Fatal(err)
	}
	if lastArchived < kept[len(kept)-1] {
		t.Fatalf("archiving did not catch up: last archived %s, want at least %s", lastArchived, kept[len(kept)-1])
	}
	all, err := backup.List(ctx, s.store, "default", "src")
	if err != nil || len(all) == 0 || !all[0].Completed {
		t.Fatalf("backups after the outage: %+v %v; want the first one completed", all, err)
	}
	for _, b := range all[1:] {
		if b.Completed {
			t.Fatalf("the backup made during the outage is listed as completed: %+v", b)
		}
	}
	restored, err := s.restore(t, backup.Keys{}, "", inside)
	if err != nil {
		t.Fatal(err)
	}
	got := queryString(t, restored.URL("postgres"), "SELECT string_agg(phase || '=' || n, ',' ORDER BY phase) FROM (SELECT phase, count(*) n FROM t GROUP BY phase) x")
	if got != "1=1000,2=1000" {
		t.Fatalf("rows by phase after PITR to %s, inside the outage: %s, want 1=1000,2=1000", inside.Format(time.RFC3339Nano), got)
	}
	m := s.backup(t)
	if v, err := backup.Verify(ctx, s.store, "default", "src", m.ID); err != nil || !v.OK {
		t.Fatalf("backup after the outage: %+v %v", v, err)
	}
}

// A backup Create calls completed already has its last WAL segment in the
// store: Create watches the archiver itself instead of pg_backup_stop's
// one-second polls, and must not return before the archiver is done. The
// fetch below does not wait or retry.
func TestCompletedBackupsLastWALSegmentIsInTheStore(t *testing.T) {
	s := newSite(t, false)
	ctx := context.Background()
	for i := range 3 {
		s.exec(t, "CREATE TABLE IF NOT EXISTS t (n int); INSERT INTO t SELECT generate_series(1, 10000)")
		m := s.backup(t)
		seg := queryString(t, s.pg.URL("postgres"), "SELECT pg_walfile_name('"+m.StopLSN+"')")
		dest := filepath.Join(s.dir, "fetched-"+seg)
		if err := backup.FetchWAL(ctx, s.store, backup.Keys{}, "default", "src", m.SystemIdentifier, seg, dest); err != nil {
			t.Fatalf("backup %d (%s) completed, but its last WAL segment %s is not in the store: %v", i, m.ID, seg, err)
		}
	}

	// Control: with an archiver that fails (the store stays reachable, so
	// only the wait can catch it), the backup fails and names the segment.
	s.exec(t, "ALTER SYSTEM SET archive_command = 'false'")
	s.exec(t, "SELECT pg_reload_conf()")
	_, err := backup.Create(ctx, backup.CreateOptions{
		Store: s.store, Namespace: "default", Instance: "src",
		ConnString: s.pg.URL("postgres"), DataDir: s.pg.Server.DataDir, StopTimeout: 3 * time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "was not archived within 3s") || !strings.Contains(err.Error(), "(segment ") {
		t.Fatalf("a backup whose WAL the archiver cannot archive: %v; want it to fail naming the segment not archived within 3s", err)
	}
	t.Log(err)
	s.exec(t, "ALTER SYSTEM RESET archive_command")
	s.exec(t, "SELECT pg_reload_conf()")
	s.backup(t)
}
