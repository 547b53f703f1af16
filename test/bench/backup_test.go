package bench

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	"github.com/pgvector/pgvector-go"
	"golang.org/x/sync/errgroup"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/controller/localruntime"
	"github.com/outpostdata/outpost/controller/safepath"
	"github.com/outpostdata/outpost/controller/singlehost"
	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/vectorstore"
)

// BenchmarkBackupVsPgBackRest measures full backups and restores side by
// side in one run, against the same PostgreSQL 15 and the same MinIO over
// TLS (a self-signed certificate that both tools trust):
//
//   - `outpost backup create` (the built binary; zstd level 1, literals
//     Huffman-coded only in segments that are mostly matches);
//   - pgBackRest 2.45 (repo type s3 on that MinIO, lz4, process-max=2), run
//     as the data directory's owner, with archive_command switched to it;
//   - the physical limits over the same bytes: a parallel raw read of the
//     data directory, one MinIO PUT of a file of the same size (16 MiB parts,
//     4 threads, unsigned payload), and `zstd -1 --no-compress-literals`
//     (the faster of the backup's two encodings) on every core;
//   - restore's physical limits over the same bytes: ranged MinIO GETs of
//     that file (16 MiB, 4 connections), `zstd -d` of its two halves in two
//     processes (restore decompresses on both cores), and a sequential
//     write of it with fsync to the same disk (restore syncs its files
//     before it returns, as pgBackRest does). restore-outpost/limit is
//     restore against the smallest of the three.
//
// The tools take turns (A B A B) so that both see the same machine load.
// Restores are timed the same way: backup.Restore (what a recovery
// bootstrap runs) against `pgbackrest restore`. Throughput is MB of the
// data directory (without pg_wal) per second. Three sub-benchmarks: pgbench
// scale 70 (about 1 GB, compressible), then the same database plus about
// 1 GB of random bytea (incompressible), then a database of only a pgvector
// table of 1.5M unclustered 128-dimensional float4 vectors with its HNSW
// index (what a feature store's instance holds). Run it alone, once:
//
//	go test -run '^$' -bench BackupVsPgBackRest -benchtime 1x -timeout 60m ./test/bench/
//
// OUTPOST_BENCH_SCALE, OUTPOST_BENCH_RANDOM_MB and
// OUTPOST_BENCH_VECTOR_ROWS change the sizes, OUTPOST_BENCH_ROUNDS the
// number of turns (default 3).
func BenchmarkBackupVsPgBackRest(b *testing.B) {
	env := newBackupBench(b)
	b.Run("pgbench", func(b *testing.B) { env.compare(b, "pgbench") })
	b.Run("pgbench+random", func(b *testing.B) {
		env.addRandom(b, envInt("OUTPOST_BENCH_RANDOM_MB", 1024))
		env.compare(b, "pgbench+random")
	})
	b.Run("pgvector+hnsw", func(b *testing.B) {
		env.replaceWithVectors(b, envInt("OUTPOST_BENCH_VECTOR_ROWS", 1500000))
		env.compare(b, "pgvector+hnsw")
	})
}

// backupBench is the shared setup: one MinIO, one server, both tools
// configured against them.
type backupBench struct {
	minio     *harness.MinIO
	srv       *postgres.Server
	outpost   string // built binary
	stateDir  string
	store     *backup.Store
	walConfig string // backup.json for outpost wal-push
	pgbrConf  string
	work      string
	random    bool
	vectors   bool
}

const (
	benchNamespace = "default"
	benchInstance  = "bench"
	benchStanza    = "bench"
)

func newBackupBench(b *testing.B) *backupBench {
	b.Helper()
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		b.Fatal("pgbackrest is not installed: run scripts/install-deps.sh (step pgbackrest)")
	}
	if _, err := exec.LookPath("zstd"); err != nil {
		b.Fatal("the zstd command is not installed; it is the decompression limit of this benchmark: run scripts/install-deps.sh (step pgbackrest)")
	}
	ctx := context.Background()
	e := &backupBench{minio: harness.StartMinIOTLS(b), work: harness.TempDir(b)}
	bin, remove, err := harness.BuildOutpost()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(remove)
	e.outpost = bin

	// A state directory as `outpost up` leaves it, so that `outpost backup
	// create` finds the instance, its credentials and its object store.
	e.stateDir = filepath.Join(e.work, "state")
	sd, err := singlehost.OpenStateDir(e.stateDir)
	if err != nil {
		b.Fatal(err)
	}
	instDir, err := sd.Instance(benchNamespace, benchInstance)
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range []string{sd.Manifests(), instDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for p := instDir; p != e.work; p = filepath.Dir(p) {
		os.Chmod(p, 0o755)
	}
	creds := filepath.Join(e.work, "minio.credentials")
	writeFile(b, creds, "accessKeyID="+e.minio.AccessKey+"\nsecretAccessKey="+e.minio.SecretKey+"\n", 0o600)
	// The store's certificate is trusted through the ObjectStore's CA
	// bundle, the Secret minio-ca, which on one host is a file.
	caFile, err := localruntime.SecretFile(e.stateDir, benchNamespace, safepath.Part{Field: "spec.caSecret.name", Value: "minio-ca"}, "ca.crt")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(caFile), 0o755); err != nil {
		b.Fatal(err)
	}
	writeFile(b, caFile, string(e.minio.CAPEM), 0o644)
	writeFile(b, filepath.Join(sd.Manifests(), "store.yaml"), `apiVersion: outpost.dev/v1alpha1
kind: ObjectStore
metadata:
  name: minio
spec:
  endpoint: `+e.minio.URL()+`
  bucket: `+e.minio.Bucket+`
  prefix: outpost
  caSecret: {name: minio-ca}
  credentials:
    file: `+creds+`
`, 0o644)
	writeFile(b, filepath.Join(sd.Manifests(), benchInstance+".yaml"), `apiVersion: outpost.dev/v1alpha1
kind: PostgresInstance
metadata:
  name: `+benchInstance+`
spec:
  resources:
    cpu: "1"
    memory: 512Mi
  storage:
    size: 10Gi
  backup:
    objectStore: {name: minio}
`, 0o644)

	storeCfg := backup.StoreConfig{Endpoint: e.minio.URL(), Bucket: e.minio.Bucket, Prefix: "outpost", AccessKey: e.minio.AccessKey, SecretKey: e.minio.SecretKey, CAFile: e.minio.CAFile}
	if e.store, err = backup.Open(ctx, storeCfg); err != nil {
		b.Fatal(err)
	}
	e.walConfig = filepath.Join(e.work, "backup.json")
	if err := backup.WriteArchiveConfig(e.walConfig, &backup.ArchiveConfig{Store: storeCfg, Namespace: benchNamespace, Instance: benchInstance}); err != nil {
		b.Fatal(err)
	}
	if err := postgres.OwnByServer(e.walConfig); err != nil {
		b.Fatal(err)
	}

	pgBin, err := postgres.BinDir(postgres.DefaultMajorVersion)
	if err != nil {
		b.Fatal(err)
	}
	// The instance's socket directory, where `outpost backup` connects as
	// the superuser, and pgBackRest too.
	sock := localruntime.SocketDir(instDir)
	if err := os.Mkdir(sock, 0o700); err != nil {
		b.Fatal(err)
	}
	if err := postgres.OwnByServer(sock); err != nil {
		b.Fatal(err)
	}
	e.srv = &postgres.Server{BinDir: pgBin, DataDir: filepath.Join(instDir, "data"), Port: harness.FreePort(b), Password: postgres.GeneratePassword(), SocketDir: sock}
	e.srv.ManagedSettings = backup.ArchiveSettings(e.outpost, e.walConfig)
	if err := e.srv.InitDB(ctx); err != nil {
		b.Fatal(err)
	}
	if err := e.srv.WriteConfig(map[string]string{"fsync": "off", "max_wal_size": "4GB", "shared_buffers": "256MB"}); err != nil {
		b.Fatal(err)
	}
	if err := e.srv.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.srv.Stop(context.Background()) })
	credJSON, _ := json.Marshal(map[string]any{"host": "127.0.0.1", "port": e.srv.Port, "database": "postgres", "username": "postgres", "password": e.srv.Password})
	writeFile(b, filepath.Join(instDir, "credentials.json"), string(credJSON), 0o600)
	writeFile(b, localruntime.SuperuserFile(instDir), `{"password": "`+e.srv.Password+`"}`, 0o600)

	// pgBackRest: repo of type s3 on the same MinIO, in its own prefix.
	for _, d := range []string{"pgbr-log", "pgbr-lock", "pgbr-spool"} {
		p := filepath.Join(e.work, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := postgres.OwnByServer(p); err != nil {
			b.Fatal(err)
		}
	}
	e.pgbrConf = filepath.Join(e.work, "pgbackrest.conf")
	writeFile(b, e.pgbrConf, fmt.Sprintf(`[global]
repo1-type=s3
repo1-path=/pgbackrest
repo1-s3-bucket=%s
repo1-s3-endpoint=127.0.0.1
repo1-storage-port=%s
repo1-s3-region=us-east-1
repo1-s3-key=%s
repo1-s3-key-secret=%s
repo1-s3-uri-style=path
repo1-storage-ca-file=%s
repo1-retention-full=100
compress-type=lz4
process-max=2
start-fast=y
log-level-console=warn
log-level-file=off
log-path=%s
lock-path=%s
spool-path=%s

[%s]
pg1-path=%s
pg1-port=%d
pg1-socket-path=%s
pg1-user=postgres
`, e.minio.Bucket, strings.Split(e.minio.Endpoint, ":")[1], e.minio.AccessKey, e.minio.SecretKey, e.minio.CAFile,
		filepath.Join(e.work, "pgbr-log"), filepath.Join(e.work, "pgbr-lock"), filepath.Join(e.work, "pgbr-spool"),
		benchStanza, e.srv.DataDir, e.srv.Port, sock), 0o644)
	if err := postgres.OwnByServer(e.pgbrConf); err != nil {
		b.Fatal(err)
	}
	e.pgbackrest(b, "stanza-create")

	scale := envInt("OUTPOST_BENCH_SCALE", 70)
	pgbench := exec.Command(filepath.Join(pgBin, "pgbench"), "-i", "-q", "-s", strconv.Itoa(scale), "-h", "127.0.0.1", "-p", strconv.Itoa(e.srv.Port), "-U", "postgres", "postgres")
	pgbench.Env = append(os.Environ(), "PGPASSWORD="+e.srv.Password)
	run(b, pgbench)
	return e
}

func writeFile(b *testing.B, p, content string, mode os.FileMode) {
	b.Helper()
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		b.Fatal(err)
	}
}

// pgbackrest runs one pgBackRest command as the data directory's owner.
func (e *backupBench) pgbackrest(b *testing.B, args ...string) string {
	b.Helper()
	cmd := exec.Command("pgbackrest", append([]string{"--config=" + e.pgbrConf, "--stanza=" + benchStanza}, args...)...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+e.srv.Password)
	cmd.Dir = e.work
	asPostgresCmd(b, cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("pgbackrest %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// asPostgresCmd runs cmd as the postgres user when we are root.
func asPostgresCmd(b *testing.B, cmd *exec.Cmd) {
	if uid, gid, ok := postgresIDs(b); ok {
		cmd.SysProcAttr = sysProcAs(uid, gid)
	}
}

func (e *backupBench) sql(b *testing.B, query string, args ...any) {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.srv.URL("postgres"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, query, args...); err != nil {
		b.Fatalf("%s: %v", query, err)
	}
}

// useArchiver points archive_command at one tool: each tool's backup waits
// for its own archive of the WAL it needs.
func (e *backupBench) useArchiver(b *testing.B, command string) {
	b.Helper()
	e.sql(b, "ALTER SYSTEM SET archive_command = '"+strings.ReplaceAll(command, "'", "''")+"'")
	e.sql(b, "SELECT pg_reload_conf()")
	// The reload is asynchronous; a new session sees the setting once the
	// postmaster has read it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, e.srv.URL("postgres"))
		if err != nil {
			b.Fatal(err)
		}
		var got string
		err = conn.QueryRow(ctx, "SHOW archive_command").Scan(&got)
		conn.Close(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if got == command {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("archive_command is still %q after reload", got)
		}
	}
}

// waitArchived switches WAL and waits until the archiver has caught up, so
// that the WAL of loading the data is not archived during (and charged to)
// whichever tool happens to run first.
func (e *backupBench) waitArchived(b *testing.B) {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.srv.URL("postgres"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	var seg string
	if err := conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		var last string
		if err := conn.QueryRow(ctx, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver").Scan(&last); err != nil {
			b.Fatal(err)
		}
		if last >= seg {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("WAL segment %s not archived within 5 minutes (last archived %q)", seg, last)
		}
	}
}

func (e *backupBench) outpostArchiveCommand() string {
	return backup.ArchiveSettings(e.outpost, e.walConfig)["archive_command"]
}

func (e *backupBench) pgbrArchiveCommand() string {
	return "pgbackrest --config=" + e.pgbrConf + " --stanza=" + benchStanza + " archive-push %p"
}

// addRandom adds mb MiB of random bytea, stored uncompressed by PostgreSQL
// (STORAGE EXTERNAL), as a backup tool sees incompressible data.
func (e *backupBench) addRandom(b *testing.B, mb int) {
	b.Helper()
	if e.random {
		return
	}
	e.random = true
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.srv.URL("postgres"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE random_blobs (id int PRIMARY KEY, b bytea); ALTER TABLE random_blobs ALTER COLUMN b SET STORAGE EXTERNAL"); err != nil {
		b.Fatal(err)
	}
	rows := make([][]any, 0, 64)
	for i := 0; i < mb; i++ {
		blob := make([]byte, 1<<20)
		rand.Read(blob)
		rows = append(rows, []any{i, blob})
		if len(rows) == cap(rows) || i == mb-1 {
			if _, err := conn.CopyFrom(ctx, pgx.Identifier{"random_blobs"}, []string{"id", "b"}, pgx.CopyFromRows(rows)); err != nil {
				b.Fatal(err)
			}
			rows = rows[:0]
		}
	}
}

// replaceWithVectors drops the other tables and loads n uniformly random
// 128-dimensional vectors with an HNSW index built on them (m 16,
// ef_construction 64, pgvector's defaults and Outpost's).
func (e *backupBench) replaceWithVectors(b *testing.B, n int) {
	b.Helper()
	if e.vectors {
		return
	}
	e.vectors = true
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, e.srv.URL("postgres"))
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `DROP TABLE IF EXISTS random_blobs, pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers;
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(128))`); err != nil {
		b.Fatal(err)
	}
	pool, err := vectorstore.Connect(ctx, e.srv.URL("postgres"))
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	rng := mrand.New(mrand.NewPCG(21, 22))
	const batch = 20000
	for start := 0; start < n; start += batch {
		rows := make([][]any, 0, batch)
		for i := start; i < min(n, start+batch); i++ {
			v := make([]float32, 128)
			for j := range v {
				v[j] = rng.Float32()
			}
			rows = append(rows, []any{int64(i), pgvector.NewVector(v)})
		}
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"id", "embedding"}, pgx.CopyFromRows(rows)); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	if _, err := admin.Exec(ctx, `SET maintenance_work_mem = '3GB'; SET max_parallel_maintenance_workers = 1;
CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)`); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d x 128 vectors loaded, HNSW index built in %s", n, time.Since(start).Round(time.Second))
}

// result is one measurement: seconds per run, over several runs.
type result struct {
	name  string
	secs  []float64
	bytes int64 // stored bytes, for backups
}

// mbps is the source bytes over the median time, in MB/s.
func (r *result) mbps(source int64) float64 {
	return float64(source) / 1e6 / median(r.secs)
}

func timed(r *result, f func()) {
	start := time.Now()
	f()
	r.secs = append(r.secs, time.Since(start).Seconds())
}

func (e *backupBench) compare(b *testing.B, label string) {
	ctx := context.Background()
	e.sql(b, "VACUUM ANALYZE")
	e.sql(b, "CHECKPOINT")
	e.waitArchived(b)
	source := dataDirBytes(b, e.srv.DataDir)
	rounds := envInt("OUTPOST_BENCH_ROUNDS", 3) * b.N

	var ours, pgbr, ourRestore, pgbrRestore, read, put, zstd, get, unzstd, write, writeDirect result
	var lastID string
	timings := &backup.RestoreTimings{}
	for range rounds {
		e.useArchiver(b, e.outpostArchiveCommand())
		timed(&ours, func() { lastID, ours.bytes = e.outpostBackup(b) })
		e.useArchiver(b, e.pgbrArchiveCommand())
		timed(&pgbr, func() { pgbr.bytes = e.pgbrBackup(b) })
	}
	// Restores take turns going first, and each starts with nothing dirty
	// in the page cache: the backups above leave gigabytes of MinIO's
	// writes unflushed, and whichever restore ran into them would wait for
	// that writeback in its own clock. One untimed restore of each goes
	// before: the backups also leave memory full of page cache, and the
	// first restore to write 2 GB pays the kernel's reclaim of it (about
	// 5 CPU-seconds here, whichever tool it is); every later one gets the
	// memory the one before freed when its directory was removed.
	restoreOurs := func(r *result, timings *backup.RestoreTimings) {
		dir := filepath.Join(e.work, "restore-outpost")
		run(b, exec.Command("sync"))
		timed(r, func() {
			if _, err := backup.Restore(ctx, backup.RestoreOptions{Store: e.store, Namespace: benchNamespace, Instance: benchInstance, BackupID: lastID, DataDir: dir, Timings: timings}); err != nil {
				b.Fatal(err)
			}
		})
		os.RemoveAll(dir)
	}
	restorePgbr := func(r *result) {
		dir := filepath.Join(e.work, "restore-pgbackrest")
		if err := os.Mkdir(dir, 0o700); err != nil {
			b.Fatal(err)
		}
		if err := postgres.OwnByServer(dir); err != nil {
			b.Fatal(err)
		}
		run(b, exec.Command("sync"))
		timed(r, func() { e.pgbackrest(b, "--pg1-path="+dir, "restore") })
		os.RemoveAll(dir)
	}
	restoreOurs(&result{}, &backup.RestoreTimings{})
	restorePgbr(&result{})
	for i := range rounds {
		if i%2 == 0 {
			restoreOurs(&ourRestore, timings)
			restorePgbr(&pgbrRestore)
		} else {
			restorePgbr(&pgbrRestore)
			restoreOurs(&ourRestore, timings)
		}
	}

	// The limits, over the same bytes.
	tarFile := filepath.Join(e.work, "datadir.tar")
	writeDataDirTar(b, e.srv.DataDir, tarFile)
	// Restore's limits: the tar in two halves compressed at level 1 with
	// literals not Huffman-coded, the faster to decode of the backup's two
	// encodings (it Huffman-codes segments that are mostly matches, such as
	// pgbench's, which makes this limit the higher for them), so that two
	// decompressions use both cores as restore's workers do; and a copy of
	// the tar written with fsync, as restore's files are made durable
	// before it returns.
	halves := splitFile(b, tarFile, 2)
	for _, h := range halves {
		run(b, exec.Command("zstd", "-q", "-1", "--no-compress-literals", "-f", h, "-o", h+".zst"))
	}
	copyFile := filepath.Join(e.work, "datadir.copy")
	for range rounds {
		timed(&read, func() { readDataDir(b, e.srv.DataDir) })
		timed(&put, func() { e.putFile(b, tarFile) })
		timed(&zstd, func() {
			run(b, exec.Command("sh", "-c", "zstd -q -1 --no-compress-literals -T0 -c "+tarFile+" >/dev/null"))
		})
		timed(&get, func() { e.getFile(b, "limit/datadir.tar") })
		timed(&unzstd, func() {
			run(b, exec.Command("sh", "-c", "zstd -q -d -c "+halves[0]+".zst >/dev/null & zstd -q -d -c "+halves[1]+".zst >/dev/null; wait"))
		})
		// The disk's write limit two ways, the faster counting: through
		// the page cache with one fsync at the end (which adds the copy
		// to the flush), and with O_DIRECT (one request in flight).
		run(b, exec.Command("sync"))
		timed(&write, func() {
			run(b, exec.Command("dd", "if="+tarFile, "of="+copyFile, "bs=16M", "conv=fsync", "status=none"))
		})
		os.Remove(copyFile)
		run(b, exec.Command("sync"))
		timed(&writeDirect, func() {
			run(b, exec.Command("dd", "if="+tarFile, "of="+copyFile, "bs=16M", "oflag=direct", "conv=fsync", "status=none"))
		})
		os.Remove(copyFile)
	}
	os.Remove(tarFile)
	for _, h := range halves {
		os.Remove(h)
		os.Remove(h + ".zst")
	}

	oursMB, pgbrMB := ours.mbps(source), pgbr.mbps(source)
	putMB, zstdMB := put.mbps(source), zstd.mbps(source)
	limit := min(putMB, zstdMB)
	b.ReportMetric(float64(source)/1e6, "source-MB")
	b.ReportMetric(oursMB, "outpost-backup-MB/s")
	b.ReportMetric(pgbrMB, "pgbackrest-backup-MB/s")
	b.ReportMetric(oursMB/pgbrMB, "backup-outpost/pgbackrest")
	b.ReportMetric(oursMB/limit, "backup-outpost/limit")
	b.ReportMetric(ourRestore.mbps(source), "outpost-restore-MB/s")
	b.ReportMetric(pgbrRestore.mbps(source), "pgbackrest-restore-MB/s")
	b.ReportMetric(ourRestore.mbps(source)/pgbrRestore.mbps(source), "restore-outpost/pgbackrest")
	restoreLimit := min(get.mbps(source), unzstd.mbps(source), max(write.mbps(source), writeDirect.mbps(source)))
	b.ReportMetric(ourRestore.mbps(source)/restoreLimit, "restore-outpost/limit")

	fmt.Printf("\n%s: %d MB of data directory, %d runs each, MB/s of source data at the median time\n", label, source/1_000_000, rounds)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "measurement\tMB/s\tseconds\tstored MB\tratio\t")
	row := func(r *result, ratio string) {
		stored := "-"
		if r.bytes > 0 {
			stored = strconv.FormatInt(r.bytes/1_000_000, 10)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t\n", r.name, r.mbps(source), secsList(r.secs), stored, ratio)
	}
	ours.name, pgbr.name = "outpost backup create (zstd-1)", "pgBackRest 2.45 backup (lz4, 2 processes)"
	ourRestore.name, pgbrRestore.name = "outpost restore", "pgBackRest 2.45 restore"
	read.name, put.name, zstd.name = "limit: raw read of the data directory", "limit: MinIO PUT over TLS (16 MiB x 4)", "limit: zstd -1 --no-compress-literals, all cores"
	row(&ours, fmt.Sprintf("%.2fx pgBackRest, %.0f%% of limit", oursMB/pgbrMB, 100*oursMB/limit))
	row(&pgbr, "")
	row(&ourRestore, fmt.Sprintf("%.2fx pgBackRest, %.0f%% of limit", ourRestore.mbps(source)/pgbrRestore.mbps(source), 100*ourRestore.mbps(source)/restoreLimit))
	row(&pgbrRestore, "")
	row(&read, "")
	row(&put, "")
	row(&zstd, "")
	get.name, unzstd.name, write.name, writeDirect.name = "restore limit: MinIO GET over TLS (16 MiB x 4)", "restore limit: zstd -d, 2 processes", "restore limit: sequential write + fsync", "restore limit: sequential O_DIRECT write + fsync"
	row(&get, "")
	row(&unzstd, "")
	row(&write, "")
	row(&writeDirect, "")
	tw.Flush()

	reportRestoreStages(b, "outpost restore", "restore-", &ourRestore, timings)
}

// reportRestoreStages prints and reports where the restores timed in r went,
// per restore: get, check, open and write are summed over the goroutines
// doing them (worker time on 2 cores); stalled is the tar reader waiting for
// an object, sync the final flush. Metrics are named prefix+stage+"-s".
func reportRestoreStages(b *testing.B, what, prefix string, r *result, timings *backup.RestoreTimings) {
	fmt.Printf("%s, seconds per restore (wall %.2f):", what, mean(r.secs))
	for _, st := range backup.RestoreStages() {
		secs := timings.Of(st).Seconds() / float64(max(1, len(r.secs)))
		fmt.Printf(" %s %.2f", st, secs)
		b.ReportMetric(secs, prefix+st.String()+"-s")
	}
	fmt.Println()
}

func mean(s []float64) float64 {
	var sum float64
	for _, v := range s {
		sum += v
	}
	return sum / float64(max(1, len(s)))
}

func secsList(s []float64) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strings.Join(parts, " ")
}

// outpostBackup runs `outpost backup create` with extra arguments (such
// as --type incremental) and returns the backup's ID and stored bytes.
func (e *backupBench) outpostBackup(b *testing.B, extra ...string) (string, int64) {
	b.Helper()
	cmd := exec.Command(e.outpost, append([]string{"--state-dir", e.stateDir, "backup", "create", benchInstance, "-o", "json"}, extra...)...)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		b.Fatalf("outpost backup create: %v\n%s%s", err, out, stderr)
	}
	var m backup.Manifest
	if err := json.Unmarshal(out, &m); err != nil {
		b.Fatalf("outpost backup create -o json: %v\n%s", err, out)
	}
	return m.ID, m.StoredBytes
}

// pgbrBackup runs a full pgBackRest backup and returns its stored size.
func (e *backupBench) pgbrBackup(b *testing.B) int64 { return e.pgbrBackupOf(b, "full") }

// pgbrBackupOf runs a pgBackRest backup of type typ (full, diff, incr) and
// returns its stored size.
func (e *backupBench) pgbrBackupOf(b *testing.B, typ string) int64 {
	b.Helper()
	e.pgbackrest(b, "backup", "--type="+typ)
	var info []struct {
		Backup []struct {
			Info struct {
				Repository struct {
					Delta int64 `json:"delta"`
				} `json:"repository"`
			} `json:"info"`
		} `json:"backup"`
	}
	out := e.pgbackrest(b, "info", "--output=json")
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info) == 0 || len(info[0].Backup) == 0 {
		b.Fatalf("pgbackrest info: %v\n%s", err, out)
	}
	last := info[0].Backup[len(info[0].Backup)-1]
	return last.Info.Repository.Delta
}

// dataDirBytes is the size of the data directory without its WAL: what
// every tool copies.
func dataDirBytes(b *testing.B, dir string) int64 {
	var total int64
	for _, f := range dataFiles(b, dir) {
		total += f.size
	}
	return total
}

type dataFile struct {
	path string
	size int64
}

func dataFiles(b *testing.B, dir string) []dataFile {
	var files []dataFile
	// The server runs: files may vanish between listing and reading.
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "pg_wal" {
			return fs.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		files = append(files, dataFile{p, info.Size()})
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return files
}

// readDataDir reads every file of the data directory in 8 MiB ranges on all
// cores: the fastest a backup can get at its input.
func readDataDir(b *testing.B, dir string) {
	type piece struct {
		path     string
		off, len int64
	}
	pieces := make(chan piece, 64)
	var wg sync.WaitGroup
	var failed error
	var mu sync.Mutex
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 8<<20)
			for p := range pieces {
				f, err := os.Open(p.path)
				if err == nil {
					_, err = f.ReadAt(buf[:p.len], p.off)
					f.Close()
				}
				if err != nil && err != io.EOF && !errors.Is(err, fs.ErrNotExist) {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
			}
		}()
	}
	for _, f := range dataFiles(b, dir) {
		for off := int64(0); off < f.size; off += 8 << 20 {
			pieces <- piece{f.path, off, min(8<<20, f.size-off)}
		}
	}
	close(pieces)
	wg.Wait()
	if failed != nil {
		b.Fatal(failed)
	}
}

// writeDataDirTar writes the data directory (without WAL) as one tar file:
// the same bytes, for the PUT and compression limits.
func writeDataDirTar(b *testing.B, dir, out string) {
	f, err := os.Create(out)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, df := range dataFiles(b, dir) {
		in, err := os.Open(df.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			b.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, df.path)
		if err := tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o600, Size: df.size, Typeflag: tar.TypeReg}); err != nil {
			b.Fatal(err)
		}
		// A file that shrank meanwhile is padded to its listed size.
		if _, err := io.CopyN(tw, io.MultiReader(in, zeros{}), df.size); err != nil {
			b.Fatal(err)
		}
		in.Close()
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// putFile uploads a file in one multipart PUT over TLS, unsigned payload and
// no Content-MD5: what MinIO can take on this machine.
func (e *backupBench) putFile(b *testing.B, file string) {
	f, err := os.Open(file)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	_, err = e.minio.Client.PutObject(context.Background(), e.minio.Bucket, "limit/datadir.tar", f, info.Size(),
		minio.PutObjectOptions{PartSize: 16 << 20, NumThreads: 4, DisableContentSha256: true})
	if err != nil {
		b.Fatal(err)
	}
}

// getFile downloads an object in 16 MiB ranges over 4 connections, as
// restore's workers fetch their chunks, and drops the bytes.
func (e *backupBench) getFile(b *testing.B, key string) {
	ctx := context.Background()
	info, err := e.minio.Client.StatObject(ctx, e.minio.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		b.Fatal(err)
	}
	const part = 16 << 20
	next := make(chan int64)
	go func() {
		defer close(next)
		for off := int64(0); off < info.Size; off += part {
			next <- off
		}
	}()
	var g errgroup.Group
	for range 4 {
		g.Go(func() error {
			for off := range next {
				opts := minio.GetObjectOptions{}
				if err := opts.SetRange(off, min(off+part, info.Size)-1); err != nil {
					return err
				}
				obj, err := e.minio.Client.GetObject(ctx, e.minio.Bucket, key, opts)
				if err != nil {
					return err
				}
				_, err = io.Copy(io.Discard, obj)
				obj.Close()
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
}

// splitFile cuts file into n pieces of about equal size, beside it.
func splitFile(b *testing.B, file string, n int) []string {
	data, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	var out []string
	for i := range n {
		piece := fmt.Sprintf("%s.%d", file, i)
		if err := os.WriteFile(piece, data[i*len(data)/n:(i+1)*len(data)/n], 0o600); err != nil {
			b.Fatal(err)
		}
		out = append(out, piece)
	}
	return out
}

// envInt reads a tuning knob of the benchmark; def when unset.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
