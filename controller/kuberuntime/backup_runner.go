package kuberuntime

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/instancemanager"
)

// RunBackup makes a base backup inside the instance's pod: it asks the
// instance manager's POST /backup, through the instance's Service (or
// ManagerURL), with the bearer token from the instance's Secret, and waits
// for its answer. The pod holds the data and the bucket's keys; the
// controller holds neither.
func (r *Runtime) RunBackup(ctx context.Context, inst *outpostv1.PostgresInstance, typ outpostv1.BackupType, onStart func(id string)) (*backup.Manifest, string, error) {
	sec := &corev1.Secret{}
	if err := r.reader().Get(ctx, types.NamespacedName{Namespace: inst.Namespace, Name: BackupTokenSecretName(inst)}, sec); err != nil {
		return nil, "", fmt.Errorf("instance Secret %s: %w", BackupTokenSecretName(inst), err)
	}
	token := string(sec.Data[KeyBackupToken])
	if token == "" {
		return nil, "", fmt.Errorf("instance Secret %s has no %s yet", sec.Name, KeyBackupToken)
	}
	base := ManagerURL(inst)
	if r.ManagerURL != nil {
		base = r.ManagerURL(inst)
	}
	u := strings.TrimSuffix(base, "/") + "/backup"
	if typ != "" {
		u += "?type=" + url.QueryEscape(string(typ))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	// No timeout: a backup takes as long as the data takes to copy; ctx
	// bounds it.
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("instance manager of %s/%s: %w", inst.Namespace, inst.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, "", fmt.Errorf("instance manager of %s/%s: %w", inst.Namespace, inst.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("instance manager of %s/%s answered %s: %s", inst.Namespace, inst.Name, resp.Status, strings.TrimSpace(string(body)))
	}
	var res instancemanager.BackupResult
	if err := json.Unmarshal(body, &res); err != nil || res.Manifest == nil {
		return nil, "", fmt.Errorf("instance manager of %s/%s: unreadable answer: %v", inst.Namespace, inst.Name, err)
	}
	onStart(res.Manifest.ID)
	return res.Manifest, res.Location, nil
}

// ApplyRetention applies the instance's retention policy to its backups.
// It runs here, in the controller, with the ObjectStore's credentials,
// which never enter the pod's environment.
func (r *Runtime) ApplyRetention(ctx context.Context, inst *outpostv1.PostgresInstance, now time.Time) (*backup.RetentionResult, error) {
	policy, err := controller.RetentionOf(inst.Spec.Backup.Retention)
	if err != nil {
		return nil, err
	}
	s, err := openStore(ctx, r.Client, r.reader(), inst.Namespace, inst.Spec.Backup.ObjectStore.Name)
	if err != nil {
		return nil, err
	}
	return backup.ApplyRetention(ctx, s, inst.Namespace, inst.Name, policy, now)
}
