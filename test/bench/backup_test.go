package bench

import (
	"archive/tar"
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/test/harness"
)

// BenchmarkFullBackup measures `backup.Create` (what `outpost backup create`
// runs) of a pgbench database into a local MinIO, and, side by side in the
// same run against the same database and MinIO, a raw reference: the data
// directory as one tar stream through zstd level 1 (all cores) into one
// streaming PutObject. It reports both in MB/s of source data, their ratio,
// and restore throughput. OUTPOST_BENCH_SCALE sets the pgbench scale
// (default 20, about 300 MB; 70 is about 1 GB).
func BenchmarkFullBackup(b *testing.B) {
	scale := 20
	if v, err := strconv.Atoi(os.Getenv("OUTPOST_BENCH_SCALE")); err == nil && v > 0 {
		scale = v
	}
	m := harness.StartMinIO(b)
	pg := harness.StartPostgres(b)
	srv := pg.Server
	cmd := exec.Command(harness.SystemBinary(b, "pgbench"), "-i", "-q", "-s", strconv.Itoa(scale), "-h", "127.0.0.1", "-p", strconv.Itoa(srv.Port), "-U", "postgres", "postgres")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+srv.Password)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	ctx := context.Background()
	conn := pg.Connect(b, "postgres")
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		b.Fatal(err)
	}
	store, err := backup.Open(ctx, backup.StoreConfig{Endpoint: m.URL(), Bucket: m.Bucket, AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	if err != nil {
		b.Fatal(err)
	}

	var ours, raw, restore time.Duration
	var source, stored int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Alternate, so both see the same machine load.
		start := time.Now()
		man, err := backup.Create(ctx, backup.CreateOptions{Store: store, Namespace: "bench", Instance: "pgbench", ConnString: pg.URL("postgres"), DataDir: srv.DataDir, ChunkSize: envInt("OUTPOST_BENCH_CHUNK_MB", 0) << 20, Concurrency: envInt("OUTPOST_BENCH_CONCURRENCY", 0)})
		if err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)
		source, stored = man.SourceBytes, man.StoredBytes

		start = time.Now()
		rawBackup(b, m, srv.DataDir, "raw/"+strconv.Itoa(i)+".tar.zst")
		raw += time.Since(start)

		dir := filepath.Join(harness.TempDir(b), "data")
		start = time.Now()
		if _, err := backup.Restore(ctx, backup.RestoreOptions{Store: store, Namespace: "bench", Instance: "pgbench", BackupID: man.ID, DataDir: dir}); err != nil {
			b.Fatal(err)
		}
		restore += time.Since(start)
		os.RemoveAll(dir)
	}
	b.StopTimer()
	mbps := func(d time.Duration) float64 { return float64(source) * float64(b.N) / 1e6 / d.Seconds() }
	b.ReportMetric(float64(source)/1e6, "source-MB")
	b.ReportMetric(float64(stored)/1e6, "stored-MB")
	b.ReportMetric(mbps(ours), "backup-MB/s")
	b.ReportMetric(mbps(raw), "raw-tar-zstd-put-MB/s")
	b.ReportMetric(mbps(ours)/mbps(raw), "backup/raw")
	b.ReportMetric(mbps(restore), "restore-MB/s")
}

// rawBackup is the reference: tar | zstd -1 (all cores) | one streaming
// multipart PutObject.
func rawBackup(b *testing.B, m *harness.MinIO, dataDir, key string) {
	pr, pw := io.Pipe()
	go func() {
		zw, err := zstd.NewWriter(pw, zstd.WithEncoderLevel(zstd.SpeedFastest))
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		tw := tar.NewWriter(zw)
		err = filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dataDir, p)
			if err := tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o600, Size: info.Size(), Typeflag: tar.TypeReg}); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.CopyN(tw, f, info.Size())
			return err
		})
		if err == nil {
			err = tw.Close()
		}
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
	}()
	_, err := m.Client.PutObject(context.Background(), m.Bucket, key, pr, -1, minio.PutObjectOptions{PartSize: 16 << 20, NumThreads: 4, ConcurrentStreamParts: true})
	if err != nil {
		b.Fatal(err)
	}
}

// envInt reads a tuning knob of the benchmark; def when unset.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
