package backup_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/postgres"
)

// A database dropped and made again under the same OID from another
// template (STRATEGY FILE_COPY copies its pages with their old LSNs) has
// files of the very names the parent listed. Taken by page, the restore
// would keep the dropped database's catalogs and rows.
func TestIncrementalTakesADatabaseMadeAgainUnderTheSameOIDWhole(t *testing.T) {
	s := newSite(t, false)
	s.exec(t, "CREATE DATABASE tmpl")
	tmpl := s.pg.Connect(t, "tmpl")
	if _, err := tmpl.Exec(context.Background(), "CREATE TABLE from_template AS SELECT g AS id FROM generate_series(1, 500) g"); err != nil {
		t.Fatal(err)
	}
	tmpl.Close(context.Background())
	s.exec(t, "CREATE DATABASE app")
	app := s.pg.Connect(t, "app")
	if _, err := app.Exec(context.Background(), "CREATE TABLE dropped_with_app AS SELECT g AS id FROM generate_series(1, 700) g"); err != nil {
		t.Fatal(err)
	}
	app.Close(context.Background())
	oid := queryString(t, s.pg.URL("postgres"), "SELECT oid::text FROM pg_database WHERE datname = 'app'")
	s.backup(t)

	s.exec(t, "DROP DATABASE app")
	s.exec(t, "CREATE DATABASE app OID "+oid+" TEMPLATE tmpl STRATEGY FILE_COPY")
	want := sums(t, s.pg.URL("app"), "from_template", "dropped_with_app")
	if !strings.Contains(want, "dropped_with_app=missing") {
		t.Fatalf("the source itself: %s", want)
	}
	s.incremental(t, "")
	s.archiveNow(t)
	restored, err := s.restore(t, backup.Keys{}, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := sums(t, restored.URL("app"), "from_template", "dropped_with_app"); got != want {
		t.Fatalf("database app restored from the chain: %s, want %s", got, want)
	}
}

// The same, with the database made again as an incremental backup begins:
// just before pg_backup_start, where its WAL is not replayed and only its
// new identity shows it, and just after, where WAL replay remakes it. The
// backup, and the next one on top of it, restore what the source holds.
func TestDatabaseMadeAgainAsAnIncrementalBeginsRestoresThroughTheChain(t *testing.T) {
	for _, moment := range []string{"before_start", "after_start"} {
		t.Run(moment, func(t *testing.T) {
			s := newSite(t, false)
			ctx := context.Background()
			s.exec(t, "CREATE DATABASE tmpl")
			s.exec(t, "CREATE DATABASE app")
			for db, sql := range map[string]string{
				"tmpl": "CREATE TABLE from_template AS SELECT g AS id FROM generate_series(1, 500) g",
				"app":  "CREATE TABLE dropped_with_app AS SELECT g AS id FROM generate_series(1, 700) g",
			} {
				conn := s.pg.Connect(t, db)
				if _, err := conn.Exec(ctx, sql); err != nil {
					t.Fatal(err)
				}
				conn.Close(ctx)
			}
			oid := queryString(t, s.pg.URL("postgres"), "SELECT oid::text FROM pg_database WHERE datname = 'app'")
			s.backup(t)

			remake := func() {
				s.exec(t, "DROP DATABASE app")
				s.exec(t, "CREATE DATABASE app OID "+oid+" TEMPLATE tmpl STRATEGY FILE_COPY")
			}
			opts := backup.CreateOptions{
				Store: s.store, Namespace: "default", Instance: "src",
				ConnString: s.pg.URL("postgres"), DataDir: s.pg.Server.DataDir, Type: backup.TypeIncremental,
			}
			if moment == "before_start" {
				done := false
				backup.BeforeBackupStart(t, func() {
					if !done {
						done = true
						remake()
					}
				})
			} else {
				opts.OnStart = func(string) { remake() }
			}
			during, err := backup.Create(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			next := s.incremental(t, "")
			want := sums(t, s.pg.URL("app"), "from_template", "dropped_with_app")
			if !strings.Contains(want, "dropped_with_app=missing") {
				t.Fatalf("the source itself: %s", want)
			}
			s.archiveNow(t)
			for _, id := range []string{during.ID, next.ID} {
				restored, err := s.restore(t, backup.Keys{}, id, time.Time{})
				if err != nil {
					t.Fatal(err)
				}
				if got := sums(t, restored.URL("app"), "from_template", "dropped_with_app"); got != want {
					t.Fatalf("database app restored from the chain up to %s: %s, want %s", id, got, want)
				}
			}
		})
	}
}

// A database made moments before a full backup (an instance's application
// database, made as the instance is set up and backed up at once) is the
// same database at the next incremental backup: only its changed pages are
// taken. Its identity is recorded, not judged against the clock.
func TestIncrementalTakesADatabaseMadeJustBeforeItsParentByPage(t *testing.T) {
	s := newSite(t, false)
	ctx := context.Background()
	s.exec(t, "CREATE DATABASE fresh")
	fresh := s.pg.Connect(t, "fresh")
	// VACUUM sets the hint bits now: set later, with data checksums on,
	// they would log and move every page.
	for _, sql := range []string{
		"CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((-g)::text) AS v FROM generate_series(1, 100000) g",
		"VACUUM big",
	} {
		if _, err := fresh.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	oid := queryString(t, s.pg.URL("postgres"), "SELECT oid::text FROM pg_database WHERE datname = 'fresh'")
	full := s.backup(t)
	if full.Databases[oid] == "" {
		t.Fatalf("the full backup records no identity for database fresh (%s): %v", oid, full.Databases)
	}
	if _, err := fresh.Exec(ctx, "UPDATE big SET v = 'changed' WHERE id IN (1, 50000)"); err != nil {
		t.Fatal(err)
	}
	inc := s.incremental(t, "")
	t.Logf("database made %s before the full backup; full %d bytes stored, incremental %d",
		queryString(t, s.pg.URL("postgres"), "SELECT ('"+full.StartTime.Format(time.RFC3339Nano)+"'::timestamptz - (pg_stat_file('base/"+oid+"/PG_VERSION')).change)::text"), full.StoredBytes, inc.StoredBytes)
	// Table big alone is 7.8 MB, about half of it after compression.
	if inc.StoredBytes > 1<<20 {
		t.Fatalf("incremental stored %d bytes after two rows changed: database fresh was taken whole", inc.StoredBytes)
	}
	want := sums(t, s.pg.URL("fresh"), "big")
	s.archiveNow(t)
	restored, err := s.restore(t, backup.Keys{}, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := sums(t, restored.URL("fresh"), "big"); got != want {
		t.Fatalf("database fresh restored from the chain: %s, want %s", got, want)
	}
}

// After a point-in-time restore into the same instance, the cluster keeps
// its system identifier but branches to a new timeline: an incremental on
// top of the old timeline's newest backup would miss pages changed on the
// new branch before that backup's start.
func TestIncrementalRefusesAParentFromAnotherTimeline(t *testing.T) {
	s := newSite(t, false)
	s.exec(t, "CREATE TABLE t (id int)")
	s.backup(t)
	s.archiveNow(t)
	restored, err := s.restore(t, backup.Keys{}, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// The restored server is the instance now, on timeline 2, archiving
	// where the old one did.
	_, err = backup.Create(context.Background(), backup.CreateOptions{
		Store: s.store, Namespace: "default", Instance: "src",
		ConnString: restored.URL("postgres"), DataDir: restored.DataDir, Type: backup.TypeIncremental,
	})
	if err == nil || !strings.Contains(err.Error(), "make a full backup first") || !strings.Contains(err.Error(), "timeline") {
		t.Fatalf("incremental on the restored server: %v, want refused for its timeline", err)
	}
	// The control: on the original timeline the same call succeeds.
	s.incremental(t, "")
}

// A spilling sort or hash join keeps its files in subdirectories of
// pgsql_tmp; a backup that stored those files without their directories
// could not be restored.
func TestBackupDuringASpillingQueryRestores(t *testing.T) {
	s := newSite(t, false)
	s.exec(t, "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g")
	want := queryString(t, s.pg.URL("postgres"), tableSum)
	fileset := filepath.Join(s.pg.Server.DataDir, "base", "pgsql_tmp", "pgsql_tmp4242.0.fileset")
	if err := os.MkdirAll(fileset, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fileset, "i3of8.p1.0"), []byte("spilled"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := postgres.OwnByServer(filepath.Dir(fileset)); err != nil {
		t.Fatal(err)
	}
	m := s.backup(t)
	s.archiveNow(t)
	restored, err := s.restore(t, backup.Keys{}, m.ID, time.Time{})
	if err != nil {
		t.Fatalf("restore of a backup taken while a query spilled: %v", err)
	}
	if got := queryString(t, restored.URL("postgres"), tableSum); got != want {
		t.Fatalf("restored table: %s, want %s", got, want)
	}
}

// pg_checksums --enable rewrites every page with its checksum but keeps its
// LSN: an incremental taken by page LSN would restore the parent's pages,
// written while checksums were off, under a pg_control that says they are
// on, and every read of them fails verification.
func TestIncrementalAcrossAChecksumChangeTakesEveryFileWhole(t *testing.T) {
	s := newSite(t, false)
	ctx := context.Background()
	setChecksums := func(mode string) {
		t.Helper()
		if err := s.pg.Server.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		bin, err := postgres.BinDir(postgres.DefaultMajorVersion)
		if err != nil {
			t.Fatal(err)
		}
		args := []string{filepath.Join(bin, "pg_checksums"), "--pgdata", s.pg.Server.DataDir, mode}
		if os.Geteuid() == 0 {
			// The data directory is the server account's.
			args = append([]string{"runuser", "-u", "postgres", "--"}, args...)
		}
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("pg_checksums %s: %v\n%s", mode, err, out)
		}
		if err := s.pg.Server.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	setChecksums("--disable")
	// Written while checksums are off: these pages carry no checksum.
	s.exec(t, "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")
	s.exec(t, "CHECKPOINT")
	full := s.backup(t)
	if full.DataChecksums != "off" {
		t.Fatalf("full backup records data_checksums %q, want off", full.DataChecksums)
	}
	setChecksums("--enable")
	want := sums(t, s.pg.URL("postgres"), "t")
	inc := s.incremental(t, "")
	if inc.DataChecksums != "on" {
		t.Fatalf("incremental records data_checksums %q, want on", inc.DataChecksums)
	}
	s.archiveNow(t)
	restored, err := s.restore(t, backup.Keys{}, inc.ID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := sums(t, restored.URL("postgres"), "t"); got != want {
		t.Fatalf("restored through the chain: %s, want %s", got, want)
	}
	// The control: the incremental really did take the table whole (a
	// by-page incremental stores nothing of an unchanged table).
	if inc.StoredBytes < full.StoredBytes/2 {
		t.Fatalf("incremental stored %d bytes against the full's %d: it did not take the files whole", inc.StoredBytes, full.StoredBytes)
	}
}
