package localruntime

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
)

// Credentials of one local instance: where it listens and the passwords of
// the superuser and the application role. Stored 0600 in the instance's
// directory, the single-host counterpart of a Kubernetes Secret.
type Credentials struct {
	Host              string `json:"host"`
	Port              int    `json:"port"`
	Database          string `json:"database"`
	Username          string `json:"username"`
	Password          string `json:"password"`
	SuperuserPassword string `json:"superuserPassword"`
}

// URI is the application role's connection URI.
func (c Credentials) URI() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(c.Username, c.Password),
		Host:     net.JoinHostPort(c.Host, strconv.Itoa(c.Port)),
		Path:     "/" + c.Database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CredentialsFile is where an instance directory keeps its credentials.
func CredentialsFile(instanceDir string) string {
	return filepath.Join(instanceDir, "credentials.json")
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
	if c.Port == 0 || c.Password == "" || c.SuperuserPassword == "" {
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
func writePrivate(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

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
