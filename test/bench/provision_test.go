package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/singlehost"
	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/test/harness"
)

// BenchmarkManifestToReady measures, per iteration, how long a new
// PostgresInstance manifest takes to be reported Ready by `outpost up`, and
// how long the raw reference takes on the same machine: initdb plus
// `pg_ctl start -w`. It reports both and their ratio (goal: at most 2).
func BenchmarkManifestToReady(b *testing.B) {
	root := harness.TempDir(b)
	sd, err := singlehost.OpenStateDir(filepath.Join(root, "state"))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	upDone := make(chan error, 1)
	go func() {
		upDone <- singlehost.Up(ctx, singlehost.UpOptions{
			StateDir: sd, FirstPort: harness.FreePort(b), Out: io.Discard,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	}()
	b.Cleanup(func() {
		cancel()
		if err := <-upDone; err != nil {
			b.Errorf("outpost up: %v", err)
		}
	})
	db := waitControlDB(b, sd)
	defer db.Close()
	waitRunning(b, db, "example", 3*time.Minute)

	bin, err := postgres.BinDir(postgres.DefaultMajorVersion)
	if err != nil {
		b.Fatal(err)
	}
	var outpostTotal, rawTotal time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := "bench-" + strconv.Itoa(i)
		start := time.Now()
		manifest := fmt.Sprintf(`apiVersion: outpost.dev/v1alpha1
kind: PostgresInstance
metadata: {name: %s}
spec:
  resources: {cpu: "1", memory: 512Mi}
  storage: {size: 1Gi}
  extensions: [vector]
  deletionPolicy: Delete
`, name)
		if err := os.WriteFile(filepath.Join(sd.Manifests(), name+".yaml"), []byte(manifest), 0o644); err != nil {
			b.Fatal(err)
		}
		waitRunning(b, db, name, time.Minute)
		outpostTotal += time.Since(start)

		rawTotal += rawInitdbAndStart(b, bin, filepath.Join(root, "raw-"+strconv.Itoa(i)))

		b.StopTimer()
		os.Remove(filepath.Join(sd.Manifests(), name+".yaml"))
		waitGone(b, db, name, time.Minute)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(outpostTotal.Milliseconds())/float64(b.N), "outpost-ms/op")
	b.ReportMetric(float64(rawTotal.Milliseconds())/float64(b.N), "raw-ms/op")
	b.ReportMetric(float64(outpostTotal)/float64(rawTotal), "ratio")
}

// rawInitdbAndStart is the reference: what a person does by hand to get a
// PostgreSQL server with password authentication and checksums running,
// timed from initdb to `pg_ctl start -w` returning; the stop is not timed.
func rawInitdbAndStart(b *testing.B, bin, dir string) time.Duration {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	pwfile := filepath.Join(dir, "pw")
	os.WriteFile(pwfile, []byte(postgres.GeneratePassword()+"\n"), 0o644)
	data := filepath.Join(dir, "data")
	port := strconv.Itoa(harness.FreePort(b))
	start := time.Now()
	run(b, asPostgres(b, dir, exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--pwfile", pwfile,
		"--auth", "scram-sha-256", "--data-checksums", "--encoding", "UTF8", "--locale", "C.UTF-8")))
	run(b, asPostgres(b, dir, exec.Command(filepath.Join(bin, "pg_ctl"), "start", "-w", "-D", data, "-l", filepath.Join(dir, "log"),
		"-o", "-p "+port+" -c listen_addresses=127.0.0.1 -c unix_socket_directories=''")))
	elapsed := time.Since(start)
	b.StopTimer()
	run(b, asPostgres(b, dir, exec.Command(filepath.Join(bin, "pg_ctl"), "stop", "-m", "fast", "-w", "-D", data)))
	os.RemoveAll(dir)
	b.StartTimer()
	return elapsed
}

func waitControlDB(b *testing.B, sd singlehost.StateDir) *controldb.DB {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		db, err := controldb.ConnectLocal(context.Background(), sd.ControlDB())
		if err == nil {
			return db
		}
		if time.Now().After(deadline) {
			b.Fatalf("controldb not reachable: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitRunning polls controldb, where the controller writes status, every
// 10 ms until the instance is Running.
func waitRunning(b *testing.B, db *controldb.DB, name string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		rec, ok, err := db.Object(context.Background(), "PostgresInstance", "default", name)
		if err != nil {
			b.Fatal(err)
		}
		if ok {
			var inst outpostv1.PostgresInstance
			if err := json.Unmarshal(rec.Object, &inst); err != nil {
				b.Fatal(err)
			}
			if inst.Status.Phase == outpostv1.InstanceRunning {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("instance %s not Running within %s", name, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitGone(b *testing.B, db *controldb.DB, name string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		_, ok, err := db.Object(context.Background(), "PostgresInstance", "default", name)
		if err != nil {
			b.Fatal(err)
		}
		if !ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("instance %s not deleted within %s", name, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
