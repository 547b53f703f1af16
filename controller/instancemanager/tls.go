package instancemanager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/outpostdata/outpost/postgres"
)

// Files of the mounted TLS Secret.
const (
	tlsCertFile = "tls.crt"
	tlsKeyFile  = "tls.key"
	tlsCAFile   = "ca.crt"
)

// installTLS copies the mounted certificate, key and CA into a directory
// of postgres' own beside its socket: a mounted Secret's files belong to
// root with the pod's group, and PostgreSQL insists on a key only its own
// account can read. It reports whether the files changed.
func (m *Manager) installTLS() (bool, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(m.opts.TLSDir, name))
		if err != nil {
			return nil, fmt.Errorf("TLS: %w (the instance's TLS Secret is mounted there)", err)
		}
		return b, nil
	}
	cert, err := read(tlsCertFile)
	if err != nil {
		return false, err
	}
	key, err := read(tlsKeyFile)
	if err != nil {
		return false, err
	}
	ca, err := read(tlsCAFile)
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(m.opts.SocketDir, 0o700); err != nil {
		return false, fmt.Errorf("socket directory: %w", err)
	}
	if err := postgres.OwnByServer(m.opts.SocketDir); err != nil {
		return false, err
	}
	files, changed, err := postgres.InstallTLS(filepath.Join(m.opts.SocketDir, "tls"), ca, cert, key)
	if err != nil {
		return false, err
	}
	m.server.TLS = files
	return changed, nil
}

// reloadTLS serves a renewed certificate: the kubelet updates the mounted
// Secret, and a reload makes postgres load the copies.
func (m *Manager) reloadTLS(ctx context.Context) {
	changed, err := m.installTLS()
	if err != nil {
		m.opts.Log.Error("keeping the server certificate in place", "err", err)
		return
	}
	if !changed || !m.super.Ready() {
		return
	}
	if err := m.server.Reload(ctx); err != nil {
		m.opts.Log.Error("reload postgres for the new server certificate", "err", err)
		return
	}
	m.opts.Log.Info("serving the renewed server certificate")
}
