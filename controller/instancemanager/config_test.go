package instancemanager

import (
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/backup"
)

func TestConfigCheckNamesTheRecoveryField(t *testing.T) {
	valid := func() Config {
		return Config{Port: 5432, Database: "app", Owner: "app", Recovery: &RecoveryConfig{
			Store: backup.StoreConfig{Endpoint: "http://127.0.0.1:9000", Bucket: "b"}, Namespace: "default", Instance: "db",
		}}
	}
	c := valid()
	if err := c.Check(); err != nil {
		t.Fatalf("a complete recovery section: %v", err)
	}
	for want, breakIt := range map[string]func(*RecoveryConfig){
		"recovery: store.endpoint": func(r *RecoveryConfig) { r.Store.Endpoint = "" },
		"recovery: store.bucket":   func(r *RecoveryConfig) { r.Store.Bucket = "" },
		"recovery: namespace":      func(r *RecoveryConfig) { r.Namespace = "" },
		"recovery: instance":       func(r *RecoveryConfig) { r.Instance = "" },
		"recovery: targetTime":     func(r *RecoveryConfig) { r.TargetTime = &time.Time{} },
	} {
		c := valid()
		breakIt(c.Recovery)
		if err := c.Check(); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("want an error starting %q, got %v", want, err)
		}
	}
}
