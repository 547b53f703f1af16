package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
	"github.com/outpostdata/outpost/usageexport/hub"
)

// BenchmarkUsageMonth meters 1,000 instances for the 720 hours of November
// (720,000 records), then per iteration measures export (plain and gzip),
// verify, and upload plus ingest at a hub, against the reference: a raw
// COPY of the same rows into the hub's table. Goals: export under 10 s,
// verify under 5 s, upload under 30 s.
func BenchmarkUsageMonth(b *testing.B) {
	ctx := context.Background()
	pg := harness.StartPostgres(b)
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		b.Fatal(err)
	}
	for _, db := range []string{"site", "hub"} {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
			b.Fatal(err)
		}
	}
	conn.Close(ctx)
	site, err := pgxpool.New(ctx, pg.URL("site"))
	if err != nil {
		b.Fatal(err)
	}
	defer site.Close()
	if err := usageexport.EnsureSchema(ctx, site); err != nil {
		b.Fatal(err)
	}
	key, err := usageexport.LoadOrCreateKey(filepath.Join(harness.TempDir(b), "k"))
	if err != nil {
		b.Fatal(err)
	}
	clock := harness.NewClock("2026-11-01T00:00:00Z")
	ledger := usageexport.NewLedger(site, clock)
	for i := range 1000 {
		inst := usageexport.Instance{UID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Kind: "PostgresInstance", Namespace: "default", Name: fmt.Sprintf("pg-%d", i)}
		if err := ledger.Observe(ctx, inst, usageexport.Shape{MilliVCores: 2000, MemoryBytes: 4 << 30, StorageBytes: 20 << 30, Labels: map[string]string{"costCentre": "cc-42"}}); err != nil {
			b.Fatal(err)
		}
	}
	clock.Set("2026-12-01T00:00:00Z")
	sampler := &usageexport.Sampler{Pool: site, Clock: clock, SiteID: usageexport.SiteID(key.Public())}
	start := time.Now()
	n, err := sampler.Sample(ctx)
	if err != nil || n != 720_000 {
		b.Fatalf("sampled %d records (%v), want 720000", n, err)
	}
	b.ReportMetric(time.Since(start).Seconds(), "sample-s")

	hubPool, err := hub.Open(ctx, pg.URL("hub"))
	if err != nil {
		b.Fatal(err)
	}
	defer hubPool.Close()
	// The hub judges records by the bench's clock, which is ahead of the wall clock.
	h := &hub.Hub{Pool: hubPool, Now: clock.Now}
	token, err := h.AddSite(ctx, "plant", usageexport.FormatPublicKey(key.Public()))
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h.Handler()}
	go srv.Serve(l)
	defer srv.Close()
	hubURL := "http://" + l.Addr().String()

	var exportS, gzipS, verifyS, uploadS, copyS float64
	var size, gzSize int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		res, err := usageexport.Export(ctx, site, usageexport.ExportOptions{Month: "2026-11", SiteName: "plant", Key: key, Clock: clock, ControllerVersion: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		exportS += time.Since(t0).Seconds()
		size = len(res.File)

		t0 = time.Now()
		gz, err := usageexport.Export(ctx, site, usageexport.ExportOptions{Month: "2026-11", SiteName: "plant", Key: key, Clock: clock, ControllerVersion: "bench", Gzip: true})
		if err != nil {
			b.Fatal(err)
		}
		gzipS += time.Since(t0).Seconds()
		gzSize = len(gz.File)

		t0 = time.Now()
		v, err := usageexport.Verify(res.File, usageexport.VerifyOptions{PublicKey: key.Public()})
		if err != nil {
			b.Fatal(err)
		}
		verifyS += time.Since(t0).Seconds()

		if _, err := hubPool.Exec(ctx, "TRUNCATE hub_records, hub_instances, hub_receipts"); err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		rc, err := usageexport.Upload(ctx, gz.File, usageexport.UploadOptions{HubURL: hubURL, Token: token})
		if err != nil || rc.NewRecords != 720_000 {
			b.Fatalf("upload: %+v, %v", rc, err)
		}
		uploadS += time.Since(t0).Seconds()

		// Reference: COPY the same rows straight into the hub's table.
		if _, err := hubPool.Exec(ctx, "TRUNCATE hub_records"); err != nil {
			b.Fatal(err)
		}
		recs := v.Payload.Records
		t0 = time.Now()
		j := 0
		_, err = hubPool.CopyFrom(ctx, pgx.Identifier{"hub_records"},
			[]string{"id", "site", "uid", "start_at", "end_at", "milli_vcores", "memory_bytes", "storage_bytes", "labels", "milli_vcore_seconds"},
			pgx.CopyFromFunc(func() ([]any, error) {
				if j == len(recs) {
					return nil, nil
				}
				r := &recs[j]
				j++
				return []any{r.ID, "plant", r.UID, r.Start, r.End, r.MilliVCores, r.MemoryBytes, r.StorageBytes, r.Labels, r.MilliVCoreSeconds}, nil
			}))
		if err != nil {
			b.Fatal(err)
		}
		copyS += time.Since(t0).Seconds()
	}
	N := float64(b.N)
	b.ReportMetric(exportS/N, "export-s")
	b.ReportMetric(gzipS/N, "export-gzip-s")
	b.ReportMetric(float64(size)/1e6, "file-MB")
	b.ReportMetric(float64(gzSize)/1e6, "file-gzip-MB")
	b.ReportMetric(verifyS/N, "verify-s")
	b.ReportMetric(uploadS/N, "upload-ingest-s")
	b.ReportMetric(copyS/N, "raw-copy-s")
	b.ReportMetric(exportS/copyS, "export/copy")
	b.ReportMetric(uploadS/copyS, "upload/copy")
}
