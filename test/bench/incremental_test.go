package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"text/tabwriter"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/postgres"
)

// BenchmarkIncrementalBackupVsPgBackRest measures incremental backups side
// by side in one run, on the setup of BenchmarkBackupVsPgBackRest (pgbench
// scale 140 by default, about 2 GB). Each round, for each tool in turn: a
// full backup, then pgbench updates (-N: accounts only) that change about
// 2% of the pages, then an incremental backup on top of it:
//
//   - `outpost backup create` and `outpost backup create --type incremental`
//     (block-level: only pages whose LSN is newer than the full backup's
//     start);
//   - pgBackRest 2.45 `--type=full` and `--type=incr` (file-level: every file
//     whose size or time changed, whole).
//
// It reports the incremental backup's time and stored bytes against the
// full backup's, and Outpost's incremental against pgBackRest's. The share
// of pages that changed is measured from Outpost's incremental backup: its
// raw bytes over the data directory's. Run it alone, once:
//
//	go test -run '^$' -bench IncrementalBackupVsPgBackRest -benchtime 1x -timeout 60m ./test/bench/
//
// OUTPOST_BENCH_SCALE changes the size, OUTPOST_BENCH_ROUNDS the number of
// turns (default 2), OUTPOST_BENCH_CHANGED_PERMILLE the share of pages
// updated (default 20, 2%).
func BenchmarkIncrementalBackupVsPgBackRest(b *testing.B) {
	e, source, txns := newIncrementalBench(b)
	rounds := envInt("OUTPOST_BENCH_ROUNDS", 2) * b.N

	var ourFull, ourIncr, pgbrFull, pgbrIncr result
	var changed []float64
	for range rounds {
		e.useArchiver(b, e.outpostArchiveCommand())
		timed(&ourFull, func() { _, ourFull.bytes = e.outpostBackup(b) })
		e.pgbenchUpdates(b, txns)
		var id string
		timed(&ourIncr, func() { id, ourIncr.bytes = e.outpostBackup(b, "--type", "incremental") })
		m, _, err := backup.ReadManifest(context.Background(), e.store, benchNamespace, benchInstance, id)
		if err != nil {
			b.Fatal(err)
		}
		if !m.Incremental() {
			b.Fatalf("backup %s is %s, not incremental", id, m.TypeName())
		}
		var raw int64
		for _, o := range m.Objects {
			raw += o.RawSize
		}
		changed = append(changed, 100*float64(raw)/float64(source))

		e.useArchiver(b, e.pgbrArchiveCommand())
		timed(&pgbrFull, func() { pgbrFull.bytes = e.pgbrBackup(b) })
		e.pgbenchUpdates(b, txns)
		timed(&pgbrIncr, func() { pgbrIncr.bytes = e.pgbrBackupOf(b, "incr") })
	}
	med := func(r *result) float64 { return median(r.secs) }
	b.ReportMetric(float64(source)/1e6, "source-MB")
	b.ReportMetric(median(changed), "changed-%")
	b.ReportMetric(med(&ourIncr)/med(&ourFull), "outpost-incr/full-time")
	b.ReportMetric(float64(ourIncr.bytes)/float64(ourFull.bytes), "outpost-incr/full-bytes")
	b.ReportMetric(med(&pgbrIncr)/med(&pgbrFull), "pgbackrest-incr/full-time")
	b.ReportMetric(float64(pgbrIncr.bytes)/float64(pgbrFull.bytes), "pgbackrest-incr/full-bytes")
	b.ReportMetric(med(&ourIncr)/med(&pgbrIncr), "incr-time-outpost/pgbackrest")

	fmt.Printf("\nincremental backup after %d pgbench -N transactions (%.1f%% of the data directory in Outpost's incremental), %d MB data directory, %d rounds\n",
		txns, median(changed), source/1_000_000, rounds)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "measurement\tseconds\tmedian\tstored MB (last)\tratio\t")
	row := func(name string, r *result, ratio string) {
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.1f\t%s\t\n", name, secsList(r.secs), med(r), float64(r.bytes)/1e6, ratio)
	}
	row("outpost full", &ourFull, "")
	row("outpost incremental", &ourIncr, fmt.Sprintf("%.1f%% of full's time, %.2f%% of its bytes; %.2fx pgBackRest incr's time",
		100*med(&ourIncr)/med(&ourFull), 100*float64(ourIncr.bytes)/float64(ourFull.bytes), med(&ourIncr)/med(&pgbrIncr)))
	row("pgBackRest 2.45 full (lz4, 2 processes)", &pgbrFull, "")
	row("pgBackRest 2.45 incr", &pgbrIncr, fmt.Sprintf("%.1f%% of full's time, %.2f%% of its bytes",
		100*med(&pgbrIncr)/med(&pgbrFull), 100*float64(pgbrIncr.bytes)/float64(pgbrFull.bytes)))
	tw.Flush()
}

// newIncrementalBench is the setup of the incremental benchmarks:
// newBackupBench at pgbench scale 140 by default (about 2 GB), vacuumed,
// checkpointed and archived. It returns the data directory's size and the
// number of pgbench -N transactions that change
// OUTPOST_BENCH_CHANGED_PERMILLE (default 20, 2%) of its pages.
func newIncrementalBench(b *testing.B) (e *backupBench, source int64, txns int) {
	b.Helper()
	if os.Getenv("OUTPOST_BENCH_SCALE") == "" {
		b.Setenv("OUTPOST_BENCH_SCALE", "140")
	}
	e = newBackupBench(b)
	e.sql(b, "VACUUM ANALYZE")
	e.sql(b, "CHECKPOINT")
	e.waitArchived(b)
	source = dataDirBytes(b, e.srv.DataDir)
	pages := source / 8192
	// A pgbench -N transaction updates one account: its old heap page and
	// a B-tree leaf page change, and the new row version lands on a page
	// that fills with many of them. So about half as many transactions as
	// pages to change.
	txns = int(pages) * envInt("OUTPOST_BENCH_CHANGED_PERMILLE", 20) / 1000 / 2
	return e, source, txns
}

// pgbenchUpdates runs n pgbench -N transactions on two clients, then a
// checkpoint, so that the changed pages are on disk for both tools alike.
func (e *backupBench) pgbenchUpdates(b *testing.B, n int) {
	b.Helper()
	pgBin, err := postgres.BinDir(postgres.DefaultMajorVersion)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(pgBin, "pgbench"), "-n", "-N", "-c", "2", "-t", strconv.Itoa(max(1, n/2)), "-h", "127.0.0.1", "-p", strconv.Itoa(e.srv.Port), "-U", "postgres", "postgres")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+e.srv.Password)
	run(b, cmd)
	e.sql(b, "CHECKPOINT")
}

// median of s; s is not empty.
func median(s []float64) float64 {
	c := append([]float64(nil), s...)
	sort.Float64s(c)
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	return (c[len(c)/2-1] + c[len(c)/2]) / 2
}
