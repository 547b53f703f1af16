package postgres_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/test/harness"
)

// show returns a setting as a new session sees it.
func show(t *testing.T, pg *harness.Postgres, name string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatalf("connect to read %s: %v", name, err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
		t.Fatalf("SHOW %s: %v", name, err)
	}
	return v
}

func TestApplyParametersReloadsForASettingThatNeedsNoRestart(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	pid := pg.Server.PID()

	restarted, err := pg.Server.ApplyParameters(ctx, map[string]string{"fsync": "off", "work_mem": "12MB"})
	if err != nil {
		t.Fatal(err)
	}
	if restarted {
		t.Error("ApplyParameters restarted the server for work_mem, which needs only a reload")
	}
	if got := show(t, pg, "work_mem"); got != "12MB" {
		t.Errorf("work_mem = %s after ApplyParameters, want 12MB", got)
	}
	if got := pg.Server.PID(); got != pid {
		t.Errorf("postmaster pid changed from %d to %d: the server was restarted", pid, got)
	}
}

func TestApplyParametersRestartsOnlyWhenPostgresRequiresIt(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	pid := pg.Server.PID()
	params := map[string]string{"fsync": "off", "max_connections": "42", "shared_buffers": "64MB"}

	restarted, err := pg.Server.ApplyParameters(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if !restarted {
		t.Error("ApplyParameters did not report a restart for max_connections and shared_buffers")
	}
	if got := show(t, pg, "max_connections"); got != "42" {
		t.Errorf("max_connections = %s, want 42", got)
	}
	if got := show(t, pg, "shared_buffers"); got != "64MB" {
		t.Errorf("shared_buffers = %s, want 64MB", got)
	}
	newPID := pg.Server.PID()
	if newPID == pid || newPID == 0 {
		t.Errorf("postmaster pid %d -> %d, want a new server process", pid, newPID)
	}

	// Applying the same settings again, as a controller does on every
	// reconcile, must not restart again.
	restarted, err = pg.Server.ApplyParameters(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if restarted || pg.Server.PID() != newPID {
		t.Errorf("applying unchanged settings restarted the server (restarted=%v, pid %d -> %d)", restarted, newPID, pg.Server.PID())
	}
}

func TestApplyParametersRefusesManagedParametersBeforeTouchingAnything(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	pid := pg.Server.PID()
	port := show(t, pg, "port")

	_, err := pg.Server.ApplyParameters(ctx, map[string]string{"work_mem": "99MB", "port": "5999"})
	if err == nil || !strings.Contains(err.Error(), `parameter "port" is managed by Outpost and cannot be set`) {
		t.Fatalf("ApplyParameters(port) = %v, want refused by name", err)
	}
	if got := show(t, pg, "port"); got != port {
		t.Errorf("port = %s, want %s unchanged", got, port)
	}
	if got := show(t, pg, "work_mem"); got == "99MB" {
		t.Error("work_mem was applied although the request was refused")
	}
	if pg.Server.PID() != pid {
		t.Error("the server was restarted for a refused request")
	}
}

func TestApplyParametersRefusesAValuePostgresRejectsAndKeepsTheOldOne(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	if _, err := pg.Server.ApplyParameters(ctx, map[string]string{"fsync": "off", "work_mem": "8MB"}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		params map[string]string
		name   string // the parameter the error must name
	}{
		{map[string]string{"fsync": "off", "work_mem": "banana"}, "work_mem"},
		{map[string]string{"fsync": "off", "work_mem": "16MB", "shared_buffers": "lots"}, "shared_buffers"},
		{map[string]string{"fsync": "off", "work_mem": "16MB", "wrok_mem": "16MB"}, "wrok_mem"},
	} {
		_, err := pg.Server.ApplyParameters(ctx, tc.params)
		if err == nil || !strings.Contains(err.Error(), `parameter "`+tc.name+`"`) {
			t.Errorf("ApplyParameters(%v) = %v, want an error naming %s", tc.params, err, tc.name)
		}
		if got := show(t, pg, "work_mem"); got != "8MB" {
			t.Errorf("after refusing %v, work_mem = %s, want 8MB still", tc.params, got)
		}
	}
	// The refused file was not left behind for the next start to trip on.
	if err := pg.Server.Restart(ctx); err != nil {
		t.Fatalf("restart after refused parameters: %v", err)
	}
	if got := show(t, pg, "work_mem"); got != "8MB" {
		t.Errorf("after restart, work_mem = %s, want 8MB", got)
	}
}

func TestApplyParametersThatStopTheServerStartingAreRolledBack(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()

	// huge_pages = on stops the start on a host without huge pages, which
	// is what this test needs (users may not preload libraries any more).
	if b, err := os.ReadFile("/proc/meminfo"); err != nil || !strings.Contains(string(b), "HugePages_Total:       0") {
		t.Fatalf("this test needs a host without huge pages (HugePages_Total 0 in /proc/meminfo): %v", err)
	}
	_, err := pg.Server.ApplyParameters(ctx, map[string]string{"fsync": "off", "huge_pages": "on"})
	if err == nil || !strings.Contains(err.Error(), "huge_pages") {
		t.Fatalf("ApplyParameters = %v, want an error naming huge_pages", err)
	}
	if err := pg.Server.Ping(ctx); err != nil {
		t.Fatalf("the server is not back after the failed change: %v", err)
	}
	if got := show(t, pg, "huge_pages"); got != "try" {
		t.Errorf("huge_pages = %q, want the previous value try", got)
	}
}

func TestApplyParametersKeepsQuotesAndBackslashesInValues(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	prefix := `it's a \ test %p `
	if _, err := pg.Server.ApplyParameters(ctx, map[string]string{"log_line_prefix": prefix, "search_path": `"$user", public`}); err != nil {
		t.Fatal(err)
	}
	if got := show(t, pg, "log_line_prefix"); got != prefix {
		t.Errorf("log_line_prefix = %q, want %q", got, prefix)
	}
	if got := show(t, pg, "search_path"); got != `"$user", public` {
		t.Errorf("search_path = %q", got)
	}
}

func TestApplyParametersKeepsOutpostsOwnSettings(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	pg.Server.ManagedSettings = map[string]string{"archive_mode": "on", "archive_command": "/bin/true"}
	restarted, err := pg.Server.ApplyParameters(ctx, map[string]string{"fsync": "off"})
	if err != nil {
		t.Fatal(err)
	}
	if !restarted {
		t.Error("turning archive_mode on needs a restart, and ApplyParameters did not restart")
	}
	if got := show(t, pg, "archive_mode"); got != "on" {
		t.Errorf("archive_mode = %s, want on", got)
	}
	if got := show(t, pg, "archive_command"); got != "/bin/true" {
		t.Errorf("archive_command = %s, want /bin/true", got)
	}
}

func TestReloadPicksUpAWrittenConfig(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	if err := pg.Server.WriteConfig(map[string]string{"fsync": "off", "statement_timeout": "7s"}); err != nil {
		t.Fatal(err)
	}
	if err := pg.Server.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := show(t, pg, "statement_timeout"); got != "7s" {
		t.Errorf("statement_timeout = %s after Reload, want 7s", got)
	}
}
