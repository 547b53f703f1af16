package backup_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/test/harness"
)

// incremental makes an incremental backup of the site on top of parent
// (empty: the newest).
func (s *site) incremental(t *testing.T, parent string) *backup.Manifest {
	t.Helper()
	m, err := backup.Create(context.Background(), backup.CreateOptions{
		Store: s.store, Namespace: "default", Instance: "src",
		ConnString: s.pg.URL("postgres"), DataDir: s.pg.Server.DataDir, Keys: s.keys,
		Type: backup.TypeIncremental, Parent: parent,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// pgbench runs pgbench with args against the site.
func (s *site) pgbench(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(harness.SystemBinary(t, "pgbench"), append(args, s.pg.URL("postgres"))...).CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench %v: %v\n%s", args, err, out)
	}
}

// sums is a checksum of every table in tables, with its row count; a table
// that does not exist shows as missing.
func sums(t *testing.T, url string, tables ...string) string {
	t.Helper()
	var parts []string
	for _, tb := range tables {
		exists := queryString(t, url, "SELECT (to_regclass('"+tb+"') IS NOT NULL)::text")
		if exists != "true" {
			parts = append(parts, tb+"=missing")
			continue
		}
		parts = append(parts, tb+"="+queryString(t, url, "SELECT count(*)::text || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM "+tb+" x"))
	}
	return strings.Join(parts, " ")
}

// incrMarker is in rows written only between incremental backups.
const incrMarker = "INCR-PLAINTEXT-MARKER-5d1e"

var chainTables = []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history", "t", "shrunk", "emptied", "dropped", "added"}

// buildChain makes a full backup and four incremental ones with updates,
// inserts, a new table, a dropped table, a truncated table, a table cut
// short by VACUUM and a VACUUM FULL in between.
func buildChain(t *testing.T, s *site) (full *backup.Manifest, incs []*backup.Manifest) {
	t.Helper()
	s.pgbench(t, "-i", "-s", "2", "-q")
	s.exec(t, "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")
	s.exec(t, "CREATE TABLE shrunk AS SELECT g AS id, repeat(md5(g::text), 4) AS v FROM generate_series(1, 20000) g")
	s.exec(t, "CREATE TABLE emptied AS SELECT g AS id FROM generate_series(1, 20000) g")
	s.exec(t, "CREATE TABLE dropped AS SELECT g AS id FROM generate_series(1, 20000) g")
	full = s.backup(t)

	// Updates and inserts.
	s.pgbench(t, "-n", "-t", "300", "-c", "2")
	s.exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(20001, 25000) g")
	incs = append(incs, s.incremental(t, ""))

	// A new table, a dropped one.
	s.exec(t, "CREATE TABLE added AS SELECT g AS id, md5(g::text) || '"+incrMarker+"' AS v FROM generate_series(1, 5000) g")
	s.exec(t, "DROP TABLE dropped")
	s.exec(t, "UPDATE t SET v = 'second' WHERE id % 7 = 0")
	incs = append(incs, s.incremental(t, ""))

	// A truncated table, a file cut short by VACUUM, a table rewritten by
	// VACUUM FULL.
	s.exec(t, "TRUNCATE emptied")
	s.exec(t, "DELETE FROM shrunk WHERE id > 5000")
	s.exec(t, "VACUUM shrunk")
	s.exec(t, "DELETE FROM t WHERE id % 3 = 0")
	s.exec(t, "VACUUM FULL t")
	incs = append(incs, s.incremental(t, ""))

	// More updates, then one more incremental.
	s.pgbench(t, "-n", "-t", "200", "-c", "2")
	s.exec(t, "INSERT INTO emptied SELECT g FROM generate_series(1, 100) g")
	incs = append(incs, s.incremental(t, ""))
	return full, incs
}

func TestIncrementalChainRestoresExactlyWhatTheSourceHolds(t *testing.T) {
	s := newSite(t, true)
	ctx := context.Background()
	full, incs := buildChain(t, s)
	// Writes after the last incremental come from WAL.
	s.exec(t, "UPDATE added SET v = 'after' WHERE id < 100")
	s.archiveNow(t)
	url := s.pg.URL("postgres")
	want := sums(t, url, chainTables...)

	if full.TypeName() != backup.TypeFull || len(full.Files) == 0 {
		t.Fatalf("full backup: type %q, %d files listed", full.TypeName(), len(full.Files))
	}
	parent := full.ID
	for i, m := range incs {
		if !m.Incremental() || m.Parent != parent || !m.Encrypted {
			t.Fatalf("incremental %d: type %q parent %q encrypted %v, want incremental on top of %s, encrypted", i, m.Type, m.Parent, m.Encrypted, parent)
		}
		// Only what changed is stored: a fraction of the full backup.
		if m.StoredBytes*2 > full.StoredBytes {
			t.Errorf("incremental %d stored %d bytes, the full backup %d: not incremental", i, m.StoredBytes, full.StoredBytes)
		}
		parent = m.ID
	}
	t.Logf("full backup %d bytes stored; incrementals %d, %d, %d, %d", full.StoredBytes, incs[0].StoredBytes, incs[1].StoredBytes, incs[2].StoredBytes, incs[3].StoredBytes)
	// Every piece is encrypted: no object in the bucket but manifests and
	// the lease lacks the age header, and none shows the marker, which only
	// incremental backups and WAL hold.
	if total, age, marked := scanBucket(t, s, incrMarker); total == 0 || age != total || marked != 0 {
		t.Fatalf("bucket: %d objects, %d age-encrypted, %d show the marker", total, age, marked)
	}

	last := incs[len(incs)-1]
	chain, err := backup.Chain(ctx, s.store, "default", "src", last.ID)
	if err != nil || len(chain) != 5 || chain[0].ID != full.ID || chain[4].ID != last.ID {
		t.Fatalf("chain of %s: %v %v, want the full backup and four incrementals", last.ID, chainIDs(chain), err)
	}
	v, err := backup.Verify(ctx, s.store, "default", "src", last.ID)
	if err != nil || !v.OK || len(v.Chain) != 5 {
		t.Fatalf("verify %s: %+v %v", last.ID, v, err)
	}

	// The newest backup is the last incremental; the restore rebuilds it
	// from the chain and replays WAL from its start.
	droppedFile := filepath.Join("base", queryString(t, url, "SELECT oid::text FROM pg_database WHERE datname = 'postgres'"))
	restored, err := s.restore(t, s.keys, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := sums(t, restored.URL("postgres"), chainTables...); got != want {
		t.Fatalf("restored from the chain:\n%s\nwant\n%s", got, want)
	}
	// Nothing the source no longer has is left behind: the restored data
	// directory holds no relation file the restored catalog does not know.
	orphans := queryString(t, restored.URL("postgres"), `
		SELECT count(*)::text FROM pg_ls_dir('`+droppedFile+`') f
		WHERE f ~ '^[0-9]+$' AND f::oid NOT IN (SELECT pg_relation_filenode(oid) FROM pg_class WHERE pg_relation_filenode(oid) IS NOT NULL)`)
	if orphans != "0" {
		t.Fatalf("%s relation files of dropped or rewritten tables were left in the restore", orphans)
	}

	// A middle link restores too: the chain up to it, then WAL.
	mid, err := s.restore(t, s.keys, incs[1].ID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := sums(t, mid.URL("postgres"), chainTables...); got != want {
		t.Fatalf("restored from incremental %s:\n%s\nwant\n%s", incs[1].ID, got, want)
	}
}

func chainIDs(ms []*backup.Manifest) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

// smallChain makes table t, a full backup and two incrementals, each after
// some updates.
func smallChain(t *testing.T, s *site) (full, inc1, inc2 *backup.Manifest) {
	t.Helper()
	s.exec(t, "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")
	full = s.backup(t)
	s.exec(t, "UPDATE t SET v = 'one' WHERE id % 5 = 0")
	inc1 = s.incremental(t, "")
	s.exec(t, "UPDATE t SET v = 'two' WHERE id % 11 = 0")
	inc2 = s.incremental(t, "")
	if inc2.Parent != inc1.ID || inc1.Parent != full.ID {
		t.Fatalf("chain: %s <- %s <- %s, got parents %s and %s", full.ID, inc1.ID, inc2.ID, inc1.Parent, inc2.Parent)
	}
	return full, inc1, inc2
}

func TestBrokenChainFailsLoudlyNamingTheBackup(t *testing.T) {
	s := newSite(t, false)
	ctx := context.Background()
	full, inc1, inc2 := smallChain(t, s)
	s.archiveNow(t)
	base := "backups/default/src/" + full.SystemIdentifier + "/base/"

	// A damaged object in the middle link: the restore fails, naming it,
	// and verify of the newest backup reports it.
	obj := base + inc1.ID + "/" + inc1.Objects[0].Name
	saved := s.readObject(t, obj)
	s.damage(t, obj)
	_, err := s.restore(t, backup.Keys{}, "", time.Time{})
	// The object's path holds inc1's ID too: the error must say it was
	// inc1 being applied, not the link before.
	if err == nil || !strings.Contains(err.Error(), "apply incremental backup "+inc1.ID) || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("restore through a damaged link: %v, want a checksum mismatch while applying %s", err, inc1.ID)
	}
	v, err := backup.Verify(ctx, s.store, "default", "src", inc2.ID)
	if err != nil || v.OK || !strings.Contains(strings.Join(v.Errors, "\n"), inc1.ID) {
		t.Fatalf("verify %s with its parent damaged: %+v %v, want an error naming %s", inc2.ID, v, err, inc1.ID)
	}
	s.writeObject(t, obj, saved)

	// A missing link (its manifest deleted by hand): refused before
	// anything is restored, naming it.
	mf := base + inc1.ID + "/manifest.json"
	savedManifest := s.readObject(t, mf)
	if err := s.minio.Client.RemoveObject(ctx, s.minio.Bucket, mf, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = s.restore(t, backup.Keys{}, "", time.Time{})
	if !errors.Is(err, backup.ErrBrokenChain) || !strings.Contains(err.Error(), inc1.ID) {
		t.Fatalf("restore with a missing link: %v, want ErrBrokenChain naming %s", err, inc1.ID)
	}
	v, err = backup.Verify(ctx, s.store, "default", "src", inc2.ID)
	if err != nil || v.OK || !strings.Contains(strings.Join(v.Errors, "\n"), inc1.ID) {
		t.Fatalf("verify %s with its parent missing: %+v %v, want an error naming %s", inc2.ID, v, err, inc1.ID)
	}
	// Nor does an incremental go on top of it: it could never be restored.
	_, err = backup.Create(ctx, backup.CreateOptions{
		Store: s.store, Namespace: "default", Instance: "src",
		ConnString: s.pg.URL("postgres"), DataDir: s.pg.Server.DataDir, Type: backup.TypeIncremental,
	})
	if !errors.Is(err, backup.ErrBrokenChain) || !strings.Contains(err.Error(), inc1.ID) || !strings.Contains(err.Error(), inc2.ID) {
		t.Fatalf("incremental on top of %s with its parent missing: %v, want ErrBrokenChain naming %s and %s", inc2.ID, err, inc2.ID, inc1.ID)
	}

	// Control: with the link back, the same restore succeeds and matches.
	s.writeObject(t, mf, savedManifest)
	want := queryString(t, s.pg.URL("postgres"), tableSum)
	restored, err := s.restore(t, backup.Keys{}, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, restored.URL("postgres"), tableSum); got != want {
		t.Fatalf("restored: %s, want %s", got, want)
	}
}

// object is a stored object with its metadata, to be put back as it was.
type object struct {
	data []byte
	meta map[string]string
}

func (s *site) readObject(t *testing.T, key string) object {
	t.Helper()
	ctx := context.Background()
	info, err := s.minio.Client.StatObject(ctx, s.minio.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o, err := s.minio.Client.GetObject(ctx, s.minio.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return object{b, info.UserMetadata}
}

func (s *site) writeObject(t *testing.T, key string, o object) {
	t.Helper()
	if _, err := s.minio.Client.PutObject(context.Background(), s.minio.Bucket, key, bytes.NewReader(o.data), int64(len(o.data)), minio.PutObjectOptions{UserMetadata: o.meta}); err != nil {
		t.Fatal(err)
	}
}

func TestRetentionAndDeleteNeverRemoveAParentOfAKeptIncremental(t *testing.T) {
	s := newSite(t, false)
	ctx := context.Background()
	full, inc1, inc2 := smallChain(t, s)

	// Deleting a backup an incremental one is on top of is refused, naming
	// the incremental; so is the full one below both.
	for _, c := range []struct{ id, dependent string }{{full.ID, inc1.ID}, {inc1.ID, inc2.ID}} {
		err := backup.DeleteBackup(ctx, s.store, "default", "src", c.id)
		if err == nil || !strings.Contains(err.Error(), c.dependent) || !strings.Contains(err.Error(), c.id) {
			t.Fatalf("delete %s: %v, want a refusal naming %s, which is on top of it", c.id, err, c.dependent)
		}
	}
	// Retention keeping only the newest backup keeps its whole chain, and
	// says which it kept for that reason.
	res, err := backup.ApplyRetention(ctx, s.store, "default", "src", backup.RetentionPolicy{Count: 1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.DeletedBackups) != 0 || strings.Join(res.KeptAsParents, ",") != full.ID+","+inc1.ID {
		t.Fatalf("retention by count 1 with a chain of three: %+v, want nothing deleted and %s, %s kept as parents", res, full.ID, inc1.ID)
	}
	// So does a window that has passed for all of them.
	res, err = backup.ApplyRetention(ctx, s.store, "default", "src", backup.RetentionPolicy{Window: time.Hour}, time.Now().Add(48*time.Hour))
	if err != nil || len(res.DeletedBackups) != 0 {
		t.Fatalf("retention by an expired window: %+v %v, want nothing deleted", res, err)
	}
	s.archiveNow(t)
	if v, err := backup.Verify(ctx, s.store, "default", "src", inc2.ID); err != nil || !v.OK {
		t.Fatalf("the kept chain no longer verifies: %+v %v", v, err)
	}

	// The newest incremental can be deleted by hand once it is not the
	// newest; then its parent is no longer anyone's.
	s.exec(t, "UPDATE t SET v = 'three' WHERE id % 11 = 0")
	inc3 := s.incremental(t, inc1.ID)
	if inc3.Parent != inc1.ID {
		t.Fatalf("incremental on top of %s has parent %s", inc1.ID, inc3.Parent)
	}
	if err := backup.DeleteBackup(ctx, s.store, "default", "src", inc2.ID); err != nil {
		t.Fatalf("delete %s, on top of which nothing is: %v", inc2.ID, err)
	}
	// A new full backup frees the old chain: retention deletes all of it.
	s.exec(t, "UPDATE t SET v = 'four' WHERE id % 13 = 0")
	newFull := s.backup(t)
	res, err = backup.ApplyRetention(ctx, s.store, "default", "src", backup.RetentionPolicy{Count: 1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.DeletedBackups, ",") != strings.Join([]string{full.ID, inc1.ID, inc3.ID}, ",") || len(res.Kept) != 1 || res.Kept[0] != newFull.ID {
		t.Fatalf("retention after a new full backup: %+v, want %s, %s, %s deleted and %s kept", res, full.ID, inc1.ID, inc3.ID, newFull.ID)
	}
	s.archiveNow(t)
	want := queryString(t, s.pg.URL("postgres"), tableSum)
	restored, err := s.restore(t, backup.Keys{}, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, restored.URL("postgres"), tableSum); got != want {
		t.Fatalf("restored %s, want %s", got, want)
	}
}

// What a schedule asks for: an incremental backup when something can be
// its parent, and a full one, saying why, when nothing can. The same state
// fails an incremental backup asked for by name.
func TestIncrementalOrFullIsFullOnlyWhenNothingCanBeTheParent(t *testing.T) {
	s := newSite(t, false)
	ctx := context.Background()
	create := func(typ string) (*backup.Manifest, error) {
		return backup.Create(ctx, backup.CreateOptions{
			Store: s.store, Namespace: "default", Instance: "src",
			ConnString: s.pg.URL("postgres"), DataDir: s.pg.Server.DataDir, Type: typ,
		})
	}
	s.exec(t, "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")
	first, err := create(backup.TypeIncrementalOrFull)
	if err != nil || first.Incremental() || first.Parent != "" || !strings.Contains(first.FullBecause, "make a full backup first") {
		t.Fatalf("with no backup yet: %+v %v; want a full backup saying there is nothing to go on top of", first, err)
	}
	s.exec(t, "UPDATE t SET v = 'one' WHERE id % 5 = 0")
	inc, err := create(backup.TypeIncrementalOrFull)
	if err != nil || !inc.Incremental() || inc.Parent != first.ID || inc.FullBecause != "" {
		t.Fatalf("on top of %s: %+v %v; want an incremental backup", first.ID, inc, err)
	}

	// The full backup's manifest deleted by hand: the chain is broken.
	mf := "backups/default/src/" + first.SystemIdentifier + "/base/" + first.ID + "/manifest.json"
	if err := s.minio.Client.RemoveObject(ctx, s.minio.Bucket, mf, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := create(backup.TypeIncremental); !errors.Is(err, backup.ErrNoParent) || !errors.Is(err, backup.ErrBrokenChain) {
		t.Fatalf("an incremental backup asked for on a broken chain: %v; want ErrNoParent and ErrBrokenChain", err)
	}
	s.exec(t, "UPDATE t SET v = 'two' WHERE id % 11 = 0")
	full, err := create(backup.TypeIncrementalOrFull)
	if err != nil || full.Incremental() || !strings.Contains(full.FullBecause, backup.ErrBrokenChain.Error()) || !strings.Contains(full.FullBecause, inc.ID) {
		t.Fatalf("on a broken chain: %+v %v; want a full backup naming %s's broken chain", full, err, inc.ID)
	}
	s.archiveNow(t)
	want := queryString(t, s.pg.URL("postgres"), tableSum)
	restored, err := s.restore(t, backup.Keys{}, full.ID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, restored.URL("postgres"), tableSum); got != want {
		t.Fatalf("restored %s: %s, want %s", full.ID, got, want)
	}
}
