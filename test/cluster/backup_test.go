package cluster

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/test/harness"
)

// With an ObjectStore (a real MinIO on the host's end of the veth, which
// pods reach), the instance pod archives its WAL and takes a Backup inside
// the pod; a second PostgresInstance with bootstrap.recovery restores, in
// its own pod, to a target time: exactly the rows committed before it.
func TestBackupInThePodRestoresToATargetTimeInANewPod(t *testing.T) {
	explainOnFailure(t)
	installOutpost(t)
	m := harness.StartMinIOOn(t, cl.HostIP().String())
	kubectl(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: minio-creds, namespace: apps}
stringData: {accessKeyID: %q, secretAccessKey: %q}
---
apiVersion: outpost.dev/v1alpha1
kind: ObjectStore
metadata: {name: minio, namespace: apps}
spec:
  endpoint: %s
  bucket: %s
  credentials: {secret: {name: minio-creds}}
---
apiVersion: outpost.dev/v1alpha1
kind: PostgresInstance
metadata: {name: src, namespace: apps}
spec:
  resources: {cpu: 250m, memory: 512Mi}
  storage: {size: 1Gi}
  backup: {objectStore: {name: minio}}
`, m.AccessKey, m.SecretKey, m.URL(), m.Bucket), "apply", "-f", "-")
	waitInstanceRunning(t, appsNamespace, "src", 3*time.Minute)

	ctx := context.Background()
	conn := connectApp(t, appsNamespace, "src", "")
	if _, err := conn.Exec(ctx, `CREATE TABLE facts AS SELECT g AS id FROM generate_series(1, 100) g`); err != nil {
		t.Fatalf("write rows: %v", err)
	}
	kubectl(t, `apiVersion: outpost.dev/v1alpha1
kind: Backup
metadata: {name: src-base, namespace: apps}
spec: {instance: {name: src}}
`, "apply", "-f", "-")
	waitFor(t, 3*time.Minute, "backup/src-base Completed", func() (bool, string) {
		out := jsonpath(t, appsNamespace, "backup/src-base", "{.status.phase} {.status.error}")
		return strings.HasPrefix(out, "Completed"), out
	})

	var target time.Time
	if _, err := conn.Exec(ctx, `INSERT INTO facts SELECT g FROM generate_series(101, 200) g`); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&target); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the target falls strictly between the two commits
	if _, err := conn.Exec(ctx, `INSERT INTO facts SELECT g FROM generate_series(201, 300) g`); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	// Recovery needs WAL past the target: wait until a segment finished
	// after the last commit is archived (archive_timeout switches it).
	archived := regexp.MustCompile(`last archived \S+ at (\S+)`)
	waitFor(t, 3*time.Minute, "WAL past the target archived", func() (bool, string) {
		msg := jsonpath(t, appsNamespace, "pgi/src", `{.status.conditions[?(@.type=="WALArchiving")].message}`)
		if mm := archived.FindStringSubmatch(msg); mm != nil {
			at, err := time.Parse(time.RFC3339, strings.TrimSuffix(mm[1], ";"))
			return err == nil && at.After(after.Add(time.Second)), msg
		}
		return false, msg
	})

	kubectl(t, fmt.Sprintf(`apiVersion: outpost.dev/v1alpha1
kind: PostgresInstance
metadata: {name: restored, namespace: apps}
spec:
  resources: {cpu: 250m, memory: 512Mi}
  storage: {size: 1Gi}
  bootstrap:
    recovery: {source: src, objectStore: {name: minio}, targetTime: %q}
`, target.UTC().Format(time.RFC3339Nano)), "apply", "-f", "-")
	waitInstanceRunning(t, appsNamespace, "restored", 4*time.Minute)
	if a, b := jsonpath(t, appsNamespace, "pod/restored-0", "{.metadata.uid}"), jsonpath(t, appsNamespace, "pod/src-0", "{.metadata.uid}"); a == "" || a == b {
		t.Fatalf("the restore did not run in a pod of its own (uids %q, %q)", a, b)
	}
	restored := connectApp(t, appsNamespace, "restored", "")
	var n, max int
	if err := restored.QueryRow(ctx, `SELECT count(*), max(id) FROM facts`).Scan(&n, &max); err != nil {
		t.Fatalf("read the restored rows: %v", err)
	}
	if n != 200 || max != 200 {
		t.Errorf("restored to %s: %d rows up to id %d, want exactly the 200 committed before the target", target.Format(time.RFC3339Nano), n, max)
	}
}
