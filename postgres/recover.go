package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Recover runs archive recovery on a data directory that holds a restored
// base backup (with its backup_label), using recovery settings such as
// restore_command and recovery_target_time from the backup package. It
// starts the server with recovery.signal, waits until recovery ends and the
// server is promoted, sets the superuser's password to s.Password (the
// restored cluster has the source's), and stops the server. Afterwards the
// server starts normally with Start.
//
// During recovery the superuser connects without a password over a Unix
// socket in a directory only the server's account and root can enter; TCP
// connections still need a password.
func (s *Server) Recover(ctx context.Context, recovery map[string]string) (err error) {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	if s.current() != nil {
		return fmt.Errorf("recover %s: the server is running", s.DataDir)
	}
	acct, err := serverAccount()
	if err != nil {
		return err
	}
	if err := os.Chmod(s.DataDir, 0o700); err != nil {
		return fmt.Errorf("recover %s: %w", s.DataDir, err)
	}
	if err := acct.own(s.DataDir); err != nil {
		return fmt.Errorf("recover: give %s to the server user: %w", s.DataDir, err)
	}
	sock, err := os.MkdirTemp(filepath.Dir(s.DataDir), ".recovery-socket-")
	if err != nil {
		return fmt.Errorf("recover %s: %w", s.DataDir, err)
	}
	defer os.RemoveAll(sock)
	if err := acct.own(sock); err != nil {
		return err
	}
	settings := map[string]string{}
	for k, v := range recovery {
		settings[k] = v
	}
	settings["unix_socket_directories"] = sock
	settings["unix_socket_permissions"] = "0700"
	conf, err := s.renderConfig(settings)
	if err != nil {
		return err
	}
	if err := s.replaceFile(s.managedConfPath(), conf); err != nil {
		return err
	}
	hba := append([]byte("local   all          postgres                    trust\n"), s.renderHBA()...)
	if err := s.replaceFile(s.hbaPath(), hba); err != nil {
		return err
	}
	if err := s.replaceFile(filepath.Join(s.DataDir, "recovery.signal"), nil); err != nil {
		return err
	}
	// Whatever happens, the next start gets the normal settings and
	// pg_hba.conf without the trust line.
	defer func() {
		if werr := s.WriteConfig(nil); werr != nil && err == nil {
			err = werr
		}
	}()

	p, err := s.spawn()
	if err != nil {
		return fmt.Errorf("recover %s: start postgres: %w", s.DataDir, err)
	}
	defer func() {
		if serr := s.stop(context.WithoutCancel(ctx)); serr != nil && err == nil {
			err = serr
		}
	}()

	u := ConnURL{Host: sock, Port: s.Port, User: Superuser, Database: "postgres"}
	for {
		if p.exited() {
			return fmt.Errorf("recovery of %s failed: postgres exited (%v); last log lines:\n%s", s.DataDir, p.exitError(), tail(s.logFile(), 15))
		}
		done, err := s.promoted(ctx, u.String())
		if err == nil && done {
			break
		}
		// A server that runs but cannot read its own catalogs (a
		// checksum failure, a missing file) will not get better by
		// waiting: say so now rather than when ctx ends.
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "XX001" || pgErr.Code == "XX002" || pgErr.Code == "58P01") {
			return fmt.Errorf("recovery of %s failed: the recovered server cannot read its data: %w; last log lines:\n%s", s.DataDir, err, tail(s.logFile(), 15))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("recovery of %s: %w (last answer: %v); last log lines:\n%s", s.DataDir, ctx.Err(), err, tail(s.logFile(), 15))
		case <-time.After(300 * time.Millisecond):
		}
	}
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("recover %s: connect after promotion: %w", s.DataDir, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := setRolePassword(ctx, conn, "ALTER ROLE", Superuser, s.Password); err != nil {
		return fmt.Errorf("recover %s: set the superuser password: %w", s.DataDir, err)
	}
	// A checkpoint makes the next start quick.
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("recover %s: checkpoint: %w", s.DataDir, err)
	}
	return nil
}

// promoted reports whether the server has left recovery.
func (s *Server) promoted(ctx context.Context, connString string) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, connString)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var inRecovery bool
	if err := conn.QueryRow(cctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return false, err
	}
	return !inRecovery, nil
}

// OwnByServer gives a path and everything beneath it to the account the
// server runs as (a no-op unless Outpost runs as root), for files the
// server's processes must read, such as the archive configuration.
func OwnByServer(path string) error {
	acct, err := serverAccount()
	if err != nil {
		return err
	}
	if err := acct.own(path); err != nil {
		return errors.Join(fmt.Errorf("give %s to the server user", path), err)
	}
	return nil
}
