package localruntime

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/postgres"
)

// RestoreCheck is what a throw-away restore of a backup found.
type RestoreCheck struct {
	Databases     int           `json:"databases"`
	IndexesOK     int           `json:"indexesChecked"`
	Tables        int           `json:"tables"`
	Rows          int64         `json:"rows"`
	RestoreTook   time.Duration `json:"restoreTook"`
	RecoveredTill time.Time     `json:"recoveredTill"`
}

// VerifyByRestore restores a backup into a throw-away server under workDir
// (to the end of the archived WAL), starts it, checks every B-tree index
// with amcheck, counts the rows of every table, and removes it again.
func VerifyByRestore(ctx context.Context, cfg backup.StoreConfig, keyFile, namespace, instance, id, exe, workDir string, log *slog.Logger) (*RestoreCheck, error) {
	dir, err := os.MkdirTemp(workDir, ".verify-"+instance+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv := &postgres.Server{DataDir: filepath.Join(dir, "data"), Port: port, Password: postgres.GeneratePassword(), LogFile: filepath.Join(dir, "postgres.log")}
	ac := &backup.ArchiveConfig{Store: cfg, Namespace: namespace, Instance: instance, KeyFile: keyFile}
	file := filepath.Join(dir, "restore.json")
	if err := backup.WriteArchiveConfig(file, ac); err != nil {
		return nil, err
	}
	keys, err := ac.Keys()
	if err != nil {
		return nil, err
	}
	store, err := backup.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := backup.RestoreInto(ctx, srv, store, keys, backup.RestoreOptions{Namespace: namespace, Instance: instance, BackupID: id}, exe, file, log); err != nil {
		return nil, err
	}
	res := &RestoreCheck{RestoreTook: time.Since(start), RecoveredTill: lastReplayed(srv.LogFile)}
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	defer srv.Stop(context.WithoutCancel(ctx))
	conn, err := pgx.Connect(ctx, srv.URL("postgres"))
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1")
	if err != nil {
		return nil, err
	}
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	for _, db := range dbs {
		if err := checkDatabase(ctx, srv.URL(db), res); err != nil {
			return nil, fmt.Errorf("restored backup %s, database %s: %w", id, db, err)
		}
		res.Databases++
	}
	return res, nil
}

func checkDatabase(ctx context.Context, url string, res *RestoreCheck) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS amcheck"); err != nil {
		return fmt.Errorf("amcheck: %w", err)
	}
	var n int
	err = conn.QueryRow(ctx, `SELECT count(bt_index_check(c.oid, true))::int FROM pg_index i
		JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
		WHERE am.amname = 'btree' AND c.relpersistence <> 't' AND i.indisready AND i.indisvalid`).Scan(&n)
	if err != nil {
		return fmt.Errorf("amcheck found a problem: %w", err)
	}
	res.IndexesOK += n
	rows, err := conn.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'`)
	if err != nil {
		return err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, t := range tables {
		var c int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+t).Scan(&c); err != nil {
			return fmt.Errorf("count rows of %s: %w", t, err)
		}
		res.Rows += c
		res.Tables++
	}
	return nil
}

// lastReplayed reads from a restore's server log the time of the last
// transaction recovery replayed ("last completed transaction was at log
// time ..."): the newest point the restore reached. It is zero when the
// restore replayed no transaction.
func lastReplayed(logFile string) time.Time {
	b, err := os.ReadFile(logFile)
	if err != nil {
		return time.Time{}
	}
	const marker = "last completed transaction was at log time "
	var last time.Time
	for _, line := range strings.Split(string(b), "\n") {
		_, rest, ok := strings.Cut(line, marker)
		if !ok {
			continue
		}
		if t, err := time.Parse("2006-01-02 15:04:05.999999-07", strings.TrimSpace(rest)); err == nil {
			last = t
		}
	}
	return last
}
