package bench

import (
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
	"testing"
)

// postgresIDs returns the postgres user's uid and gid when we are root
// (postgres refuses to run as root), and ok false otherwise.
func postgresIDs(b *testing.B) (uid, gid int, ok bool) {
	if os.Geteuid() != 0 {
		return 0, 0, false
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		b.Fatalf("running as root needs the postgres user: %v", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, true
}

// asPostgres makes a command run as the postgres user when we are root, as
// a person would with `sudo -u postgres`, and gives it dir.
func asPostgres(b *testing.B, dir string, cmd *exec.Cmd) *exec.Cmd {
	if uid, gid, ok := postgresIDs(b); ok {
		if err := os.Chown(dir, uid, gid); err != nil {
			b.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	return cmd
}

func run(b *testing.B, cmd *exec.Cmd) {
	b.Helper()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", cmd.String(), err, out)
	}
}

// sysProcAs runs a command as uid:gid.
func sysProcAs(uid, gid int) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
}
