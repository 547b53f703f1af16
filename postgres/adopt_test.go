package postgres_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/test/harness"
)

// sameServer describes the server pg runs, as a restarted Outpost process
// would from its own state: a new Server value with no process of its own.
func sameServer(pg *harness.Postgres) *postgres.Server {
	return &postgres.Server{
		BinDir:   pg.Server.BinDir,
		DataDir:  pg.Server.DataDir,
		Port:     pg.Server.Port,
		Password: pg.Server.Password,
	}
}

func TestAdoptAttachesToTheRunningServerAndCanStopIt(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	pid := pg.Server.PID()

	srv := sameServer(pg)
	adopted, err := srv.Adopt(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !adopted {
		t.Fatal("Adopt found nothing running on a live server's data directory")
	}
	if srv.PID() != pid {
		t.Errorf("adopted pid %d, the server's is %d", srv.PID(), pid)
	}
	select {
	case <-srv.Exited():
		t.Fatal("Exited is closed while the adopted server runs")
	default:
	}

	if err := srv.Stop(ctx); err != nil {
		t.Fatalf("stop the adopted server: %v", err)
	}
	select {
	case <-srv.Exited():
	default:
		t.Error("Exited is not closed after Stop")
	}
	if srv.PID() != 0 {
		t.Errorf("PID = %d after Stop, want 0", srv.PID())
	}
	if err := pg.Server.Ping(ctx); err == nil {
		t.Error("the server still answers after the adopter stopped it")
	}
	if _, err := os.Stat(filepath.Join(pg.Server.DataDir, "postmaster.pid")); !os.IsNotExist(err) {
		t.Errorf("postmaster.pid is still there after a clean stop (%v)", err)
	}

	again, err := sameServer(pg).Adopt(ctx)
	if err != nil || again {
		t.Errorf("Adopt on a stopped data directory = %v, %v; want false, nil", again, err)
	}
}

func TestAdoptedServerCanBeRestarted(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	pid := pg.Server.PID()

	srv := sameServer(pg)
	if ok, err := srv.Adopt(ctx); err != nil || !ok {
		t.Fatalf("Adopt = %v, %v", ok, err)
	}
	t.Cleanup(func() { srv.Stop(context.Background()) })
	if err := srv.Restart(ctx); err != nil {
		t.Fatalf("restart the adopted server: %v", err)
	}
	if srv.PID() == 0 || srv.PID() == pid {
		t.Errorf("after Restart pid %d -> %d, want a new process", pid, srv.PID())
	}
	if err := srv.Ping(ctx); err != nil {
		t.Errorf("the restarted server does not answer: %v", err)
	}
}

func TestAdoptAfterTheServerWasKilledFindsNothingAndStartRecovers(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	conn := pg.Connect(t, "postgres")
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before the crash')"); err != nil {
		t.Fatal(err)
	}
	// A backend busy with a long query outlives its postmaster, holding the
	// shared memory a new one needs.
	busy := pg.Connect(t, "postgres")
	go busy.Exec(context.Background(), "SELECT count(*) FROM generate_series(1, 10000000000)")
	eventually(t, "the long query runs", func() bool {
		var n int
		conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%generate_series%' AND state = 'active' AND pid <> pg_backend_pid()").Scan(&n)
		return n == 1
	})

	if err := syscall.Kill(pg.Server.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-pg.Server.Exited()

	// postmaster.pid is left behind, naming a dead process.
	srv := sameServer(pg)
	adopted, err := srv.Adopt(ctx)
	if err != nil || adopted {
		t.Fatalf("Adopt after SIGKILL = %v, %v; want false, nil", adopted, err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatalf("start after SIGKILL: %v", err)
	}
	t.Cleanup(func() { srv.Stop(context.Background()) })
	var v string
	if err := pg.Connect(t, "postgres").QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != "before the crash" {
		t.Errorf("data after crash recovery: %q, %v", v, err)
	}
}

func TestAdoptRefusesAServerThatDoesNotAcceptThePassword(t *testing.T) {
	pg := harness.StartPostgres(t)
	srv := sameServer(pg)
	srv.Password = "not-the-password"
	adopted, err := srv.Adopt(context.Background())
	if err == nil || adopted {
		t.Fatalf("Adopt with a wrong password = %v, %v; want an error", adopted, err)
	}
	if !strings.Contains(err.Error(), "password") {
		t.Errorf("error does not say the password failed: %v", err)
	}
	if srv.PID() != 0 {
		t.Error("a refused adoption left the process attached")
	}
}

func TestAdoptOnAFreshDataDirectoryFindsNothing(t *testing.T) {
	dir := harness.TempDir(t)
	srv := &postgres.Server{DataDir: filepath.Join(dir, "data"), Port: harness.FreePort(t), Password: "x"}
	adopted, err := srv.Adopt(context.Background())
	if err != nil || adopted {
		t.Fatalf("Adopt on an empty directory = %v, %v; want false, nil", adopted, err)
	}
}
