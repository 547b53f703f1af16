package controldb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// AllocatePort returns the TCP port of a local instance: the one it already
// has, or else the lowest port from `from` upwards that no other instance
// holds and that nothing is listening on. The allocation is kept until
// ReleasePort, so an instance keeps its endpoint across restarts.
func (db *DB) AllocatePort(ctx context.Context, namespace, name string, from int) (int, error) {
	var port int
	err := db.Pool.QueryRow(ctx, "SELECT port FROM local_ports WHERE namespace = $1 AND name = $2", namespace, name).Scan(&port)
	if err == nil {
		return port, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("controldb: port of %s/%s: %w", namespace, name, err)
	}
	for port = from; port < 65536; port++ {
		if !listenable(port) {
			continue
		}
		tag, err := db.Pool.Exec(ctx, "INSERT INTO local_ports (port, namespace, name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", port, namespace, name)
		if err != nil {
			return 0, fmt.Errorf("controldb: allocate port for %s/%s: %w", namespace, name, err)
		}
		if tag.RowsAffected() == 1 {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free TCP port from %d upwards for %s/%s", from, namespace, name)
}

// ReleasePort gives an instance's port back.
func (db *DB) ReleasePort(ctx context.Context, namespace, name string) error {
	if _, err := db.Pool.Exec(ctx, "DELETE FROM local_ports WHERE namespace = $1 AND name = $2", namespace, name); err != nil {
		return fmt.Errorf("controldb: release port of %s/%s: %w", namespace, name, err)
	}
	return nil
}

func listenable(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
