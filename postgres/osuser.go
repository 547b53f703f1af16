package postgres

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// serverUser is the account postgres runs as when Outpost runs as root:
// postgres refuses to start as root, and Debian's packages create this
// account.
const serverUser = "postgres"

// account is the operating-system user that owns a data directory and runs
// the server. A nil *account means "the current user".
type account struct {
	name     string
	uid, gid uint32
}

// serverAccount returns the account to run postgres as: nil when we are not
// root, the postgres system user when we are.
func serverAccount() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(serverUser)
	if err != nil {
		return nil, fmt.Errorf("running as root, postgres must run as the %q user, which does not exist: %w (install postgresql-%d)", serverUser, err, DefaultMajorVersion)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", serverUser, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", serverUser, u.Gid, err)
	}
	return &account{name: u.Username, uid: uint32(uid), gid: uint32(gid)}, nil
}

// sysProcAttr makes a child process run as the account. It is never nil,
// so callers can add to it.
func (a *account) sysProcAttr() *syscall.SysProcAttr {
	if a == nil {
		return &syscall.SysProcAttr{}
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: a.uid, Gid: a.gid}}
}

// own gives the account a path and everything beneath it.
func (a *account) own(path string) error {
	if a == nil {
		return nil
	}
	return filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(a.uid), int(a.gid))
	})
}

// checkReachable fails when the account cannot walk down to dir, which
// happens when a parent directory is private to root (mode 0700).
func (a *account) checkReachable(dir string) error {
	if a == nil {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		traversable := fi.Mode().Perm()&0o001 != 0 || (ok && st.Uid == a.uid && fi.Mode().Perm()&0o100 != 0)
		if !traversable {
			return fmt.Errorf("directory %s is not searchable by the %s user that runs postgres: make it mode 0755 or choose a state directory elsewhere", p, a.name)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
