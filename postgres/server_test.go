package postgres_test

import (
	"context"
	"os"
	"syscall"
	"testing"

	"github.com/outpostdata/outpost/test/harness"
)

func TestDataDirectoryIsPrivateToTheServerAccount(t *testing.T) {
	pg := harness.StartPostgres(t)
	fi, err := os.Stat(pg.Server.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("data directory mode %o, want 700", perm)
	}
	if os.Geteuid() == 0 {
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid == 0 {
			t.Error("data directory is owned by root, not by the account postgres runs as")
		}
	}
}

func TestServerRunsInItsOwnProcessGroup(t *testing.T) {
	// A Ctrl-C in a terminal signals the foreground process group; the
	// server must not be in Outpost's, so only Outpost decides when it stops.
	pg := harness.StartPostgres(t)
	pid := pg.Server.PID()
	pgid, err := syscall.Getpgid(pid)
	if err != nil {
		t.Fatal(err)
	}
	if pgid != pid {
		t.Errorf("postmaster pid %d is in process group %d, want its own", pid, pgid)
	}
	if pgid == syscall.Getpgrp() {
		t.Error("postmaster shares the test's process group")
	}
}

func TestStopEndsTheServerAndForgetsIt(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	exited := pg.Server.Exited()
	if err := pg.Server.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	default:
		t.Error("Exited channel not closed after Stop")
	}
	if pg.Server.PID() != 0 {
		t.Errorf("PID = %d after Stop", pg.Server.PID())
	}
	if err := pg.Server.Ping(ctx); err == nil {
		t.Error("server still answers after Stop")
	}
	if err := pg.Server.Start(ctx); err != nil {
		t.Fatalf("start again after Stop: %v", err)
	}
}

func TestStartMakesAGroupWritableDataDirectoryPrivateAgain(t *testing.T) {
	// What a volume with fsGroup looks like after a pod restart: kubelet
	// leaves the data directory setgid and group-writable (2770), which
	// PostgreSQL refuses.
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	if err := pg.Server.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pg.Server.DataDir, 0o2770); err != nil {
		t.Fatal(err)
	}
	if err := pg.Server.Start(ctx); err != nil {
		t.Fatalf("start after the volume was remounted group-writable: %v", err)
	}
	fi, err := os.Stat(pg.Server.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode() & (os.ModePerm | os.ModeSetgid); mode != 0o700 {
		t.Errorf("data directory mode %o after start, want 700", mode)
	}
}
