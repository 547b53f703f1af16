package localruntime_test

import (
	"os"
	"strings"
	"testing"

	"github.com/outpostdata/outpost/controller/localruntime"
)

// An instance directory written before the secrets were split keeps
// working: the superuser's password moves out of credentials.json into
// its own 0600 file.
func TestSuperuserPasswordMovesOutOfTheApplicationsCredentials(t *testing.T) {
	dir := t.TempDir()
	old := `{"host": "127.0.0.1", "port": 5440, "database": "app", "username": "app", "password": "app-pw", "superuserPassword": "super-pw"}`
	if err := os.WriteFile(localruntime.CredentialsFile(dir), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	pw, err := localruntime.ReadSuperuser(dir)
	if err != nil || pw != "super-pw" {
		t.Fatalf("ReadSuperuser = %q, %v", pw, err)
	}
	b, _ := os.ReadFile(localruntime.CredentialsFile(dir))
	if strings.Contains(string(b), "super-pw") || !strings.Contains(string(b), "app-pw") {
		t.Errorf("credentials.json after the move:\n%s", b)
	}
	if fi, err := os.Stat(localruntime.SuperuserFile(dir)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("superuser file: %v %v", err, fi)
	}
	if pw, err := localruntime.ReadSuperuser(dir); err != nil || pw != "super-pw" {
		t.Errorf("read again: %q, %v", pw, err)
	}
	url, err := localruntime.SuperuserURL(dir, "postgres")
	if err != nil || !strings.Contains(url, "host="+localruntime.SocketDir(dir)) || !strings.Contains(url, "sslmode=disable") {
		t.Errorf("superuser URL %q (%v), want the socket", url, err)
	}

	// A damaged superuser file is named, and nothing is lost.
	if err := os.WriteFile(localruntime.SuperuserFile(dir), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := localruntime.ReadSuperuser(dir); err == nil || !strings.Contains(err.Error(), localruntime.SuperuserFile(dir)) {
		t.Errorf("damaged superuser file: %v", err)
	}
}
