package instancemanager

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"

	"github.com/outpostdata/outpost/postgres"
)

// ConfigFileName is the key of the instance's ConfigMap, and the name of
// the file the pod mounts it as.
const ConfigFileName = "instance.json"

// Environment variables the pod gets from the instance's credentials Secret.
const (
	EnvSuperuserPassword = "OUTPOST_SUPERUSER_PASSWORD"
	EnvAppPassword       = "OUTPOST_APP_PASSWORD"
)

// Config is what the controller wants of one server: the contents of the
// instance's ConfigMap. It holds no secrets.
type Config struct {
	// Port the server listens on.
	Port int `json:"port"`
	// Database is the application database, owned by Owner.
	Database string `json:"database"`
	// Owner is the application role.
	Owner string `json:"owner"`
	// Databases are created besides Database, owned by Owner.
	Databases []string `json:"databases,omitempty"`
	// Extensions are created in every application database.
	Extensions []string `json:"extensions,omitempty"`
	// Parameters are postgresql.conf settings, already merged with those
	// derived from the instance's memory.
	Parameters map[string]string `json:"parameters,omitempty"`
	// Backup, when set, archives WAL with `outpost wal-push` and lets
	// POST /backup take base backups.
	Backup *BackupConfig `json:"backup,omitempty"`
	// Recovery, when set, makes the first start restore a backup instead
	// of running initdb.
	Recovery *RecoveryConfig `json:"recovery,omitempty"`
}

var identifier = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Check refuses a configuration the manager cannot act on safely; the
// error names the field.
func (c *Config) Check() error {
	if c.Port <= 0 || c.Port > 65535 {
		return fmt.Errorf("port: %d is not a TCP port", c.Port)
	}
	if !identifier.MatchString(c.Database) {
		return fmt.Errorf("database: %q is not a valid name", c.Database)
	}
	if !identifier.MatchString(c.Owner) || c.Owner == postgres.Superuser {
		return fmt.Errorf("owner: %q is not a valid application role", c.Owner)
	}
	for _, d := range c.Databases {
		if !identifier.MatchString(d) {
			return fmt.Errorf("databases: %q is not a valid name", d)
		}
	}
	if err := postgres.CheckExtensions(c.Extensions); err != nil {
		return fmt.Errorf("extensions: %w", err)
	}
	if err := postgres.CheckMergedParameters(c.Parameters); err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	if b := c.Backup; b != nil && (b.Store.Endpoint == "" || b.Store.Bucket == "" || b.Namespace == "" || b.Instance == "") {
		return fmt.Errorf("backup: store.endpoint, store.bucket, namespace and instance are required")
	}
	if c.Recovery != nil {
		if err := c.Recovery.check(); err != nil {
			return err
		}
	}
	return nil
}

// AllDatabases is the application database followed by the others.
func (c *Config) AllDatabases() []string {
	out := []string{c.Database}
	for _, d := range c.Databases {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// ReadConfig reads and checks a configuration file.
func ReadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("instance configuration: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("instance configuration %s: %w", path, err)
	}
	if err := c.Check(); err != nil {
		return c, fmt.Errorf("instance configuration %s: %w", path, err)
	}
	return c, nil
}
