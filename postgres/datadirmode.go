package postgres

import (
	"fmt"
	"os"
)

// privateDataDir gives the data directory the mode PostgreSQL insists on
// before every start. A Kubernetes volume with fsGroup comes back group-
// writable and setgid (2770) after each remount, and PostgreSQL then refuses
// to start ("data directory has invalid permissions"): a pod that restarted
// would never be ready again. 0750 is kept, as PostgreSQL accepts it for
// clusters initialised with group access.
func (s *Server) privateDataDir() error {
	fi, err := os.Stat(s.DataDir)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", s.DataDir, err)
	}
	mode := fi.Mode() & (os.ModePerm | os.ModeSetgid | os.ModeSetuid | os.ModeSticky)
	if mode == 0o700 || mode == 0o750 {
		return nil
	}
	if err := os.Chmod(s.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory %s has mode %o, which PostgreSQL refuses, and it could not be made 0700: %w", s.DataDir, mode, err)
	}
	return nil
}
