package postgres_test

import (
	"context"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/test/harness"
)

// supervise runs a Supervisor for the test and returns it with a function
// that stops it and returns Run's error.
func supervise(t *testing.T, sup *postgres.Supervisor) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- sup.Run(ctx) }()
	var result error
	var stopped bool
	stop := func() error {
		if !stopped {
			cancel()
			result, stopped = <-errc, true
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return stop
}

// eventually polls cond for up to a minute: a bound so a broken test ends,
// not a timing requirement.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSupervisorBringsBackAKilledPostmasterWithItsData(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	setup := pg.Connect(t, "postgres")
	if _, err := setup.Exec(ctx, "CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders VALUES (1, 'bolts'), (2, 'nuts')"); err != nil {
		t.Fatal(err)
	}
	// A backend busy with a long query does not notice the postmaster's
	// death; it lives on holding the shared memory a new postmaster needs.
	busy, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close(ctx)
	var busyPID int
	if err := busy.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&busyPID); err != nil {
		t.Fatal(err)
	}
	go busy.Exec(context.Background(), "SELECT count(*) FROM generate_series(1, 10000000000)")
	eventually(t, "the long query runs", func() bool {
		var active bool
		setup.QueryRow(ctx, "SELECT state = 'active' FROM pg_stat_activity WHERE pid = $1", busyPID).Scan(&active)
		return active
	})

	var changes atomic.Int32
	sup := &postgres.Supervisor{Server: pg.Server, Logger: harness.Logger(t), OnChange: func() { changes.Add(1) }}
	stop := supervise(t, sup)
	eventually(t, "the supervisor reports the server ready", sup.Ready)

	oldPID := pg.Server.PID()
	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()

	var items []string
	for {
		items = nil
		conn, err := pgx.Connect(ctx, pg.URL("postgres"))
		if err == nil {
			rows, qerr := conn.Query(ctx, "SELECT item FROM orders ORDER BY id")
			if qerr == nil {
				items, err = pgx.CollectRows(rows, pgx.RowTo[string])
			} else {
				err = qerr
			}
			conn.Close(ctx)
		}
		if err == nil {
			break
		}
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("postgres did not answer within 10s of SIGKILL: %v (supervisor's last error: %v)", err, sup.LastError())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("answering again %v after SIGKILL", time.Since(killed).Round(time.Millisecond))

	if strings.Join(items, ",") != "bolts,nuts" {
		t.Errorf("after the crash the table holds %v, want [bolts nuts]", items)
	}
	if pid := pg.Server.PID(); pid == oldPID || pid == 0 {
		t.Errorf("postmaster pid %d after the crash, was %d", pid, oldPID)
	}
	if err := sup.LastError(); err == nil || !strings.Contains(err.Error(), "exited unexpectedly") {
		t.Errorf("LastError() = %v, want the crash", err)
	}
	eventually(t, "the supervisor reports the server ready again", sup.Ready)
	if got := sup.Restarts(); got != 1 {
		t.Errorf("Restarts() = %d, want 1", got)
	}
	if changes.Load() < 3 { // adopt, crash, restart
		t.Errorf("OnChange called %d times, want at least 3", changes.Load())
	}

	if err := stop(); err != nil {
		t.Fatalf("Run returned %v when its context ended", err)
	}
	if sup.Ready() {
		t.Error("Ready() is true after Run returned")
	}
	if err := pg.Server.Ping(ctx); err == nil {
		t.Error("the server still answers after Run returned")
	}
}

func TestSupervisorStartsAStoppedServerAndStopsItWhenDone(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	if err := pg.Server.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	sup := &postgres.Supervisor{Server: pg.Server, Logger: harness.Logger(t)}
	stop := supervise(t, sup)
	eventually(t, "the supervisor reports the server ready", sup.Ready)
	if err := pg.Server.Ping(ctx); err != nil {
		t.Fatalf("ready, but the server does not answer: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if pg.Server.PID() != 0 {
		t.Error("the server is still running after Run returned")
	}
}

func TestSupervisorAdoptsAServerAnotherProcessLeftRunning(t *testing.T) {
	pg := harness.StartPostgres(t)
	pid := pg.Server.PID()
	srv := sameServer(pg) // as a restarted controller sees it
	sup := &postgres.Supervisor{Server: srv, Logger: harness.Logger(t)}
	stop := supervise(t, sup)
	eventually(t, "the supervisor reports the server ready", sup.Ready)
	if srv.PID() != pid {
		t.Errorf("supervised pid %d, want the running server's %d (adopted, not a second start)", srv.PID(), pid)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pg.Server.Exited():
	case <-time.After(time.Minute):
		t.Fatal("the adopted server did not stop when Run returned")
	}
}

func TestSupervisorDoesNotCountARestartForNewParametersAsACrash(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	sup := &postgres.Supervisor{Server: pg.Server, Logger: harness.Logger(t)}
	supervise(t, sup)
	eventually(t, "the supervisor reports the server ready", sup.Ready)

	restarted, err := pg.Server.ApplyParameters(ctx, map[string]string{"fsync": "off", "max_connections": "60"})
	if err != nil || !restarted {
		t.Fatalf("ApplyParameters = %v, %v; want a restart", restarted, err)
	}
	eventually(t, "the supervisor reports the server ready", sup.Ready)
	if got := show(t, pg, "max_connections"); got != "60" {
		t.Errorf("max_connections = %s, want 60", got)
	}
	if sup.Restarts() != 0 {
		t.Errorf("Restarts() = %d after an intended restart, want 0", sup.Restarts())
	}
}

func TestSupervisorRefusesADataDirectoryWithoutACluster(t *testing.T) {
	srv := &postgres.Server{DataDir: harness.TempDir(t) + "/nothing", Port: harness.FreePort(t), Password: "x"}
	err := (&postgres.Supervisor{Server: srv}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "InitDB") {
		t.Fatalf("Run on an empty data directory = %v, want an error saying to run InitDB", err)
	}
}
