package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// settingNotApplied is the error pg_file_settings shows both for a value
// PostgreSQL refuses and for a change that has to wait for a restart;
// pg_settings.pending_restart tells the two apart after a reload.
const settingNotApplied = "setting could not be applied"

// reloadWait bounds the wait for a reload when ctx has no deadline.
const reloadWait = 10 * time.Second

// Reload makes the server re-read its configuration files (SIGHUP through
// pg_reload_conf) and returns once the server has loaded them, so that the
// next connection sees the new settings. If the files have errors that make
// PostgreSQL ignore them, the error lists them.
func (s *Server) Reload(ctx context.Context) error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	conn, err := s.connect(ctx)
	if err != nil {
		return fmt.Errorf("reload postgres %s: %w", s.DataDir, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return s.reload(ctx, conn)
}

// reload signals a reload and waits until conn's own backend has processed
// it: its pg_conf_load_time moves, and from then on pg_settings on conn
// (pending_restart in particular) reflects the new files.
func (s *Server) reload(ctx context.Context, conn *pgx.Conn) error {
	var before time.Time
	if err := conn.QueryRow(ctx, "SELECT pg_conf_load_time()").Scan(&before); err != nil {
		return fmt.Errorf("reload postgres %s: %w", s.DataDir, err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("reload postgres %s: %w", s.DataDir, err)
	}
	waitCtx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, reloadWait)
		defer cancel()
	}
	for {
		// Each query is a new command, between which the backend handles
		// the SIGHUP the postmaster passed on.
		var after time.Time
		err := conn.QueryRow(waitCtx, "SELECT pg_conf_load_time()").Scan(&after)
		if err == nil && after.After(before) {
			return nil
		}
		if err == nil {
			select {
			case <-time.After(20 * time.Millisecond):
				continue
			case <-waitCtx.Done():
				err = waitCtx.Err()
			}
		}
		// PostgreSQL loads nothing from files with unknown names or syntax
		// errors; say which.
		if problems, perr := fileSettingErrors(context.WithoutCancel(ctx), conn); perr == nil && len(problems) > 0 {
			return fmt.Errorf("reload postgres %s: the configuration was not loaded: %s", s.DataDir, describe(problems))
		}
		return fmt.Errorf("reload postgres %s: not loaded: %w", s.DataDir, err)
	}
}

// ApplyParameters makes the server run with params (plus ManagedSettings):
// it refuses managed parameters via CheckMergedParameters before touching
// anything, writes the managed config (WriteConfig), reloads, and then asks
// pg_settings whether any setting is pending a restart, restarting only if
// PostgreSQL requires it. It reports whether it restarted.
//
// A value PostgreSQL refuses (work_mem = 'banana', an unknown name) is not
// left in the file, where it would stop the next start: the previous file is
// put back and the error names the parameter. Likewise, if the server will
// not start with the new settings (shared_preload_libraries naming a missing
// library), the previous file is put back and the server started with it.
//
// When the server is not running, the file is written and takes effect at
// the next start; nothing is checked against PostgreSQL then.
func (s *Server) ApplyParameters(ctx context.Context, params map[string]string) (restarted bool, err error) {
	if err := CheckMergedParameters(params); err != nil {
		return false, err
	}
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()

	if s.current() == nil {
		if err := s.WriteConfig(params); err != nil {
			return false, fmt.Errorf("apply parameters: %w", err)
		}
		return false, nil
	}
	// Connect first: a file PostgreSQL has not checked is never left behind.
	conn, err := s.connect(ctx)
	if err != nil {
		return false, fmt.Errorf("apply parameters to postgres %s: %w", s.DataDir, err)
	}
	defer func() { conn.Close(context.WithoutCancel(ctx)) }()
	previous, err := s.readConfig()
	if err != nil {
		return false, fmt.Errorf("apply parameters: %w", err)
	}
	changed, err := s.writeConfig(params)
	if err != nil {
		return false, fmt.Errorf("apply parameters: %w", err)
	}

	// rollback puts the previous file back after PostgreSQL refused the
	// new one, so that neither a reload nor the next start picks it up.
	rollback := func(cause error) error {
		if err := s.restoreConfig(previous); err != nil {
			return errors.Join(cause, err)
		}
		if err := s.reload(ctx, conn); err != nil {
			return errors.Join(cause, err)
		}
		return cause
	}

	// Unknown names and syntax errors make PostgreSQL ignore the whole
	// file; they show before any reload.
	problems, err := fileSettingErrors(ctx, conn)
	if err != nil {
		return false, fmt.Errorf("apply parameters to postgres %s: %w", s.DataDir, err)
	}
	if bad := refused(problems, false); len(bad) > 0 {
		return false, s.refusal(bad, rollback)
	}

	loaded, err := s.configLoaded(ctx, conn)
	if err != nil {
		return false, fmt.Errorf("apply parameters to postgres %s: %w", s.DataDir, err)
	}
	if changed || !loaded {
		if err := s.reload(ctx, conn); err != nil {
			return false, fmt.Errorf("apply parameters: %w", err)
		}
		// Refused values show now: they could not be applied, and are not
		// merely waiting for a restart.
		if problems, err = fileSettingErrors(ctx, conn); err != nil {
			return false, fmt.Errorf("apply parameters to postgres %s: %w", s.DataDir, err)
		}
		if bad := refused(problems, true); len(bad) > 0 {
			return false, s.refusal(bad, rollback)
		}
	}

	pending, err := pendingRestart(ctx, conn)
	if err != nil {
		return false, fmt.Errorf("apply parameters to postgres %s: %w", s.DataDir, err)
	}
	if len(pending) == 0 {
		return false, nil
	}
	conn.Close(ctx)
	if err := s.restart(ctx); err != nil {
		// The server is down: put the previous settings back and bring it
		// up with them, so that a bad setting costs a failed change, not an
		// outage.
		names := strings.Join(pending, ", ")
		if rerr := s.restoreConfig(previous); rerr != nil {
			return true, errors.Join(fmt.Errorf("apply parameters: postgres %s would not start with %s changed: %w", s.DataDir, names, err), rerr)
		}
		if serr := s.start(ctx); serr != nil {
			return true, fmt.Errorf("apply parameters: postgres %s would not start with %s changed, nor with the previous settings restored: %w", s.DataDir, names, errors.Join(err, serr))
		}
		return true, fmt.Errorf("apply parameters: postgres %s would not start with %s changed, so the previous settings were restored and it runs with them again: %w", s.DataDir, names, err)
	}
	return true, nil
}

// refusal builds the error for settings PostgreSQL refused, naming each with
// the server's own log lines about it, and rolls the file back.
func (s *Server) refusal(bad []fileSettingError, rollback func(error) error) error {
	msg := describe(bad) + "; the previous settings are still in effect"
	var related []string
	for _, line := range strings.Split(tail(s.logFile(), 30), "\n") {
		for _, b := range bad {
			if b.name != "" && strings.Contains(line, `"`+b.name+`"`) {
				related = append(related, strings.TrimSpace(line))
				break
			}
		}
	}
	if len(related) > 0 {
		msg += "\nserver log:\n" + strings.Join(related, "\n")
	}
	return rollback(fmt.Errorf("apply parameters: PostgreSQL refused %s", msg))
}

// connect opens a superuser connection to the postgres database.
func (s *Server) connect(ctx context.Context) (*pgx.Conn, error) {
	return pgx.Connect(ctx, s.URL("postgres"))
}

// configLoaded reports whether the server loaded the managed settings file
// after it was last written, so an unchanged file needs no reload (and a
// controller reconciling every few seconds does not make every backend
// re-read its configuration each time).
func (s *Server) configLoaded(ctx context.Context, conn *pgx.Conn) (bool, error) {
	fi, err := os.Stat(s.managedConfPath())
	if err != nil {
		return false, err
	}
	var loadedAt time.Time
	if err := conn.QueryRow(ctx, "SELECT pg_conf_load_time()").Scan(&loadedAt); err != nil {
		return false, err
	}
	return loadedAt.After(fi.ModTime()), nil
}

// fileSettingError is a row of pg_file_settings with an error.
type fileSettingError struct {
	file           string
	line           int
	name, setting  string
	message        string
	pendingRestart bool
}

// fileSettingErrors returns what pg_file_settings, which parses the
// configuration files afresh on each query, finds wrong with them.
func fileSettingErrors(ctx context.Context, conn *pgx.Conn) ([]fileSettingError, error) {
	rows, err := conn.Query(ctx, `
		SELECT coalesce(f.sourcefile, ''), coalesce(f.sourceline, 0), coalesce(f.name, ''), coalesce(f.setting, ''),
		       f.error, coalesce(s.pending_restart, false)
		FROM pg_file_settings f LEFT JOIN pg_settings s ON s.name = lower(f.name)
		WHERE f.error IS NOT NULL
		ORDER BY f.seqno`)
	if err != nil {
		return nil, fmt.Errorf("read pg_file_settings: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (fileSettingError, error) {
		var e fileSettingError
		err := row.Scan(&e.file, &e.line, &e.name, &e.setting, &e.message, &e.pendingRestart)
		return e, err
	})
}

// refused picks the errors that are not a change waiting for a restart.
// Before a reload, "could not be applied" is ambiguous and passes; after
// one, it is a refusal unless pg_settings marks the setting pending_restart.
func refused(problems []fileSettingError, reloaded bool) []fileSettingError {
	var bad []fileSettingError
	for _, p := range problems {
		if p.message == settingNotApplied && (!reloaded || p.pendingRestart) {
			continue
		}
		bad = append(bad, p)
	}
	return bad
}

func describe(problems []fileSettingError) string {
	parts := make([]string, 0, len(problems))
	for _, p := range problems {
		if p.name == "" {
			parts = append(parts, fmt.Sprintf("%s line %d: %s", p.file, p.line, p.message))
			continue
		}
		parts = append(parts, fmt.Sprintf("parameter %q = %q (%s line %d): %s", p.name, p.setting, p.file, p.line, p.message))
	}
	return strings.Join(parts, "; ")
}

// pendingRestart returns the settings whose new values wait for a restart.
func pendingRestart(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, "SELECT name FROM pg_settings WHERE pending_restart ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("read pg_settings: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
