package instancemanager

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/controller/archiving"
)

// watchArchiving reads the WAL archiver, puts Outpost's archive settings
// back when a superuser changed them with ALTER SYSTEM, and keeps what it
// found for GET /archiver (which the controller turns into the
// WALArchiving condition) and /metrics.
func (m *Manager) watchArchiving(ctx context.Context) {
	st, err := m.readArchiving(ctx)
	if err != nil {
		m.opts.Log.Warn("cannot watch WAL archiving", "err", err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Drift is reported until the controller has seen it once, even when
	// the next look finds the setting restored.
	if m.archiver != nil && len(st.Drift) == 0 && !m.archiverSeen {
		st.Drift = m.archiver.Drift
	}
	m.archiver, m.archiverSeen = st, false
}

func (m *Manager) readArchiving(ctx context.Context) (*archiving.Status, error) {
	conn, err := pgx.Connect(ctx, m.server.URL("postgres"))
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	st, err := archiving.Read(ctx, conn)
	if err != nil {
		return nil, err
	}
	drift := archiving.CheckDrift(st, m.server.ManagedSettings)
	return st, archiving.RestoreManaged(ctx, conn, drift, m.opts.Log)
}

// archiving returns the last status read, nil before the first.
func (m *Manager) archiving() *archiving.Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.archiver
}

// serveArchiver answers GET /archiver with the last status read as JSON,
// or 503 before the first; the drift it reports is then cleared.
func (m *Manager) serveArchiver(w http.ResponseWriter, _ *http.Request) {
	m.mu.Lock()
	st := m.archiver
	m.archiverSeen = true
	m.mu.Unlock()
	if st == nil {
		http.Error(w, "the WAL archiver has not been read yet", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(st)
}
