package localruntime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/outpostdata/outpost/postgres"
)

// Credentials of one local instance's application role: where it listens,
// the role's password, and the CA file that verifies the server. Stored
// 0600 in the instance's directory, the single-host counterpart of the
// Kubernetes `<name>-app` Secret. The superuser's password is not here but
// in SuperuserFile, which only the controller's account reads.
type Credentials struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Database string `json:"database"`
	Username string `json:"username"`
	Password string `json:"password"`
	// SSLRootCert is the site CA's certificate (sslrootcert).
	SSLRootCert string `json:"sslrootcert,omitempty"`
	// LegacySuperuserPassword is where Outpost before the split kept the
	// superuser's password; ReadSuperuser moves it out.
	LegacySuperuserPassword string `json:"superuserPassword,omitempty"`
}

// URI is the application role's connection URI, verifying the server
// with the site CA.
func (c Credentials) URI() string {
	return postgres.ConnURL{Host: c.Host, Port: c.Port, User: c.Username, Password: c.Password,
		Database: c.Database, RootCert: c.SSLRootCert}.String()
}

// CredentialsFile is where an instance directory keeps its credentials.
func CredentialsFile(instanceDir string) string {
	return filepath.Join(instanceDir, "credentials.json")
}

// SuperuserFile holds the superuser's password, 0600 for the controller's
// account (root on a real site) alone.
func SuperuserFile(instanceDir string) string { return filepath.Join(instanceDir, "superuser.json") }

// SocketDir is the directory of an instance's Unix socket, which only the
// server's account and root may enter: the superuser connects there.
func SocketDir(instanceDir string) string { return filepath.Join(instanceDir, "run") }

type superuserCredentials struct {
	Password string `json:"password"`
}

// ReadSuperuser returns the superuser's password of an instance. A
// credentials file written before the split still holds it: it moves into
// SuperuserFile, and the credentials file is written again without it.
func ReadSuperuser(instanceDir string) (string, error) {
	path := SuperuserFile(instanceDir)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		c, cerr := ReadCredentials(instanceDir)
		if cerr != nil || c.LegacySuperuserPassword == "" {
			return "", fmt.Errorf("superuser credentials %s: %w", path, err)
		}
		if err := writeSuperuser(instanceDir, c.LegacySuperuserPassword); err != nil {
			return "", err
		}
		pw := c.LegacySuperuserPassword
		c.LegacySuperuserPassword = ""
		return pw, writeCredentials(instanceDir, c)
	}
	if err != nil {
		return "", fmt.Errorf("superuser credentials: %w", err)
	}
	var su superuserCredentials
	if err := json.Unmarshal(b, &su); err != nil || su.Password == "" {
		return "", fmt.Errorf("superuser credentials %s are damaged (%v): restore the file, or delete the instance directory to start afresh", path, err)
	}
	return su.Password, nil
}

func writeSuperuser(instanceDir, password string) error {
	b, err := json.Marshal(superuserCredentials{Password: password})
	if err != nil {
		return err
	}
	return writePrivate(SuperuserFile(instanceDir), b)
}

// SuperuserURL is a superuser URI for a database of a local instance,
// through its Unix socket: the superuser cannot log in over TCP with a
// password.
func SuperuserURL(instanceDir, database string) (string, error) {
	creds, err := ReadCredentials(instanceDir)
	if err != nil {
		return "", err
	}
	pw, err := ReadSuperuser(instanceDir)
	if err != nil {
		return "", err
	}
	return postgres.ConnURL{Host: SocketDir(instanceDir), Port: creds.Port, User: postgres.Superuser,
		Password: pw, Database: database}.String(), nil
}

// PgpassFile is a libpq password file for the application role, so that
// psql and other libpq clients connect without a password on the command
// line.
func PgpassFile(instanceDir string) string { return filepath.Join(instanceDir, "pgpass") }

// ReadCredentials reads an instance's credentials file.
func ReadCredentials(instanceDir string) (Credentials, error) {
	var c Credentials
	path := CredentialsFile(instanceDir)
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("credentials %s are damaged: %w", path, err)
	}
	if c.Port == 0 || c.Password == "" {
		return c, fmt.Errorf("credentials %s are incomplete: restore the file, or delete the instance directory to start afresh", path)
	}
	return c, nil
}

func writeCredentials(instanceDir string, c Credentials) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := writePrivate(CredentialsFile(instanceDir), b); err != nil {
		return err
	}
	pgpass := fmt.Sprintf("%s:%d:*:%s:%s\n", c.Host, c.Port, pgpassEscape(c.Username), pgpassEscape(c.Password))
	return writePrivate(PgpassFile(instanceDir), []byte(pgpass))
}

// writePrivate writes a 0600 file atomically, so a crash never leaves half
// a credentials file behind.
func writePrivate(path string, data []byte) error { return writeFileAtomic(path, data, 0o600) }

func pgpassEscape(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == ':' || s[i] == '\\' {
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(out)
}
