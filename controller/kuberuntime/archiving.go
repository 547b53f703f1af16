package kuberuntime

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/archiving"
)

// archiverClient asks instance managers; a pod that does not answer
// quickly leaves the WALArchiving condition as it was.
var archiverClient = &http.Client{Timeout: 5 * time.Second}

// ReadArchiver asks the pod's instance manager (GET /archiver) what the
// WAL archiver did; the instance manager reads pg_stat_archiver next to
// the server and restores drifted archive settings itself.
func (r *Runtime) ReadArchiver(ctx context.Context, inst *outpostv1.PostgresInstance) (*archiving.Status, error) {
	base := ManagerURL(inst)
	if r.ManagerURL != nil {
		base = r.ManagerURL(inst)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/archiver", nil)
	if err != nil {
		return nil, err
	}
	resp, err := archiverClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("instance manager of %s/%s: %w", inst.Namespace, inst.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("instance manager of %s/%s: %w", inst.Namespace, inst.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("instance manager of %s/%s answered %s: %s", inst.Namespace, inst.Name, resp.Status, strings.TrimSpace(string(body)))
	}
	st := &archiving.Status{}
	if err := json.Unmarshal(body, st); err != nil {
		return nil, fmt.Errorf("instance manager of %s/%s: unreadable archiver status: %w", inst.Namespace, inst.Name, err)
	}
	return st, nil
}
