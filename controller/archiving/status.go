package archiving

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Status is what one server's WAL archiver did, as PostgreSQL counts it
// (pg_stat_archiver counts since the statistics were last reset), and what
// still waits to be archived.
type Status struct {
	// ArchiveMode is the effective archive_mode.
	ArchiveMode string `json:"archiveMode"`

	ArchivedCount    int64     `json:"archivedCount"`
	LastArchivedWAL  string    `json:"lastArchivedWAL,omitempty"`
	LastArchivedTime time.Time `json:"lastArchivedTime,omitzero"`
	FailedCount      int64     `json:"failedCount"`
	LastFailedWAL    string    `json:"lastFailedWAL,omitempty"`
	LastFailedTime   time.Time `json:"lastFailedTime,omitzero"`

	// Pending counts the segments (and history files) waiting to be
	// archived: the .ready files in pg_wal/archive_status.
	Pending int `json:"pending"`
	// OldestPendingWAL waits longest, for OldestPendingAge: how long ago
	// PostgreSQL finished writing it.
	OldestPendingWAL string        `json:"oldestPendingWAL,omitempty"`
	OldestPendingAge time.Duration `json:"oldestPendingAge,omitempty"`

	// Settings are the effective values of the Watched settings.
	Settings map[string]Setting `json:"settings"`
	// Drift lists the Watched settings that differed from Outpost's own
	// values when they were read; CheckDrift fills it.
	Drift []Drift `json:"drift,omitempty"`
}

// Setting is one effective setting and the file it came from:
// postgresql.auto.conf when a superuser ran ALTER SYSTEM.
type Setting struct {
	Value      string `json:"value"`
	SourceFile string `json:"sourceFile,omitempty"`
}

// Failing reports whether the last attempt to archive failed: PostgreSQL
// retries the same segment until it succeeds, so a failure newer than the
// last success means the archive is falling behind now.
func (s *Status) Failing() bool {
	return s.FailedCount > 0 && s.LastFailedTime.After(s.LastArchivedTime)
}

// Read asks the server over conn, which must be a superuser's (or a member
// of pg_monitor and pg_read_all_settings).
func Read(ctx context.Context, conn *pgx.Conn) (*Status, error) {
	st := &Status{Settings: map[string]Setting{}}
	var archivedAt, failedAt *time.Time
	err := conn.QueryRow(ctx, `SELECT archived_count, coalesce(last_archived_wal, ''), last_archived_time,
		failed_count, coalesce(last_failed_wal, ''), last_failed_time FROM pg_stat_archiver`).
		Scan(&st.ArchivedCount, &st.LastArchivedWAL, &archivedAt, &st.FailedCount, &st.LastFailedWAL, &failedAt)
	if err != nil {
		return nil, fmt.Errorf("read pg_stat_archiver: %w", err)
	}
	if archivedAt != nil {
		st.LastArchivedTime = *archivedAt
	}
	if failedAt != nil {
		st.LastFailedTime = *failedAt
	}
	var oldest string
	var age float64
	err = conn.QueryRow(ctx, `SELECT name, extract(epoch FROM now() - modification)::float8, count(*) OVER ()::int
		FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready' ORDER BY modification, name LIMIT 1`).Scan(&oldest, &age, &st.Pending)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("list pg_wal/archive_status: %w", err)
	default:
		st.OldestPendingWAL = strings.TrimSuffix(oldest, ".ready")
		st.OldestPendingAge = time.Duration(max(age, 0) * float64(time.Second))
	}
	rows, err := conn.Query(ctx, `SELECT name, setting, coalesce(sourcefile, '') FROM pg_settings WHERE name = ANY($1)`,
		append([]string{"archive_mode"}, Watched...))
	if err != nil {
		return nil, fmt.Errorf("read archive settings from pg_settings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var s Setting
		if err := rows.Scan(&name, &s.Value, &s.SourceFile); err != nil {
			return nil, fmt.Errorf("read archive settings from pg_settings: %w", err)
		}
		st.Settings[name] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read archive settings from pg_settings: %w", err)
	}
	st.ArchiveMode = st.Settings["archive_mode"].Value
	delete(st.Settings, "archive_mode")
	return st, nil
}
