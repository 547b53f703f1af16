package archiving

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Watched are the settings that decide where WAL goes and where a restore
// reads it from. A superuser's ALTER SYSTEM SET archive_command would
// otherwise replace `outpost wal-push` unnoticed (archive_library, when
// set, wins over archive_command).
var Watched = []string{"archive_command", "archive_library", "restore_command"}

// Drift is one Watched setting whose effective value is not Outpost's.
type Drift struct {
	Setting string `json:"setting"`
	Found   string `json:"found"`
	Managed string `json:"managed"`
	// SourceFile is where the found value came from.
	SourceFile string `json:"sourceFile,omitempty"`
}

func (d Drift) String() string {
	from := ""
	if d.SourceFile != "" {
		from = " (from " + d.SourceFile + ")"
	}
	return fmt.Sprintf("%s was %q%s instead of Outpost's %q", d.Setting, d.Found, from, d.Managed)
}

// DriftMessage joins drifts for a condition or event.
func DriftMessage(drift []Drift) string {
	parts := make([]string, len(drift))
	for i, d := range drift {
		parts[i] = d.String()
	}
	return strings.Join(parts, "; ")
}

// CheckDrift compares the effective Watched settings in st with managed,
// the settings Outpost wrote (a Watched name missing from managed must be
// empty), and records the differences in st.Drift.
func CheckDrift(st *Status, managed map[string]string) []Drift {
	st.Drift = nil
	for _, name := range Watched {
		got, ok := st.Settings[name]
		if !ok {
			continue
		}
		if want := managed[name]; got.Value != want {
			st.Drift = append(st.Drift, Drift{Setting: name, Found: got.Value, Managed: want, SourceFile: got.SourceFile})
		}
	}
	return st.Drift
}

// RestoreManaged removes what ALTER SYSTEM set for the drifted settings
// from postgresql.auto.conf and reloads, so Outpost's own file applies
// again. Settings from elsewhere are Outpost's own file, which its caller
// rewrites.
func RestoreManaged(ctx context.Context, conn *pgx.Conn, drift []Drift, log *slog.Logger) error {
	if len(drift) == 0 {
		return nil
	}
	for _, d := range drift {
		// The name comes from Watched, never from the server or a user.
		if _, err := conn.Exec(ctx, "ALTER SYSTEM RESET "+pgx.Identifier{d.Setting}.Sanitize()); err != nil {
			return fmt.Errorf("restore the managed %s: %w", d.Setting, err)
		}
		log.Warn("WAL archive setting changed outside Outpost; restored the managed value", "setting", d.Setting, "found", d.Found, "managed", d.Managed, "sourceFile", d.SourceFile)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("reload after restoring the managed archive settings: %w", err)
	}
	return nil
}
