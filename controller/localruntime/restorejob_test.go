package localruntime_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/localruntime"
	"github.com/outpostdata/outpost/test/harness"
)

// ports hands out free loopback ports.
type ports struct{ t *testing.T }

func (p ports) AllocatePort(context.Context, string, string, int) (int, error) {
	return harness.FreePort(p.t), nil
}
func (ports) ReleasePort(context.Context, string, string) error { return nil }

// hangingStore accepts connections and never answers, like an object store
// behind a stalled network, until release.
type hangingStore struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newHangingStore(t *testing.T) *hangingStore {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hangingStore{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
		}
	}()
	t.Cleanup(h.release)
	return h
}

func (h *hangingStore) release() {
	h.l.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
	h.conns = nil
}

func TestARestoreDoesNotHoldUpOtherInstances(t *testing.T) {
	ctx := context.Background()
	stall := newHangingStore(t)
	creds := filepath.Join(harness.TempDir(t), "creds")
	if err := os.WriteFile(creds, []byte("accessKeyID=a\nsecretAccessKey=b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rt := &localruntime.Runtime{
		StateDir: harness.TempDir(t), Ports: ports{t}, Log: harness.Logger(t),
		ObjectStores: func(_ context.Context, ns, name string) (*outpostv1.ObjectStore, error) {
			os_ := &outpostv1.ObjectStore{}
			os_.Namespace, os_.Name = ns, name
			os_.Spec.Endpoint, os_.Spec.Bucket = "http://"+stall.l.Addr().String(), "backups"
			os_.Spec.Credentials.File = creds
			return os_, nil
		},
	}
	t.Cleanup(func() { rt.Shutdown() })
	instance := func(name string) *outpostv1.PostgresInstance {
		inst := &outpostv1.PostgresInstance{Spec: outpostv1.PostgresInstanceSpec{
			Resources: outpostv1.InstanceResources{CPU: resource.MustParse("1"), Memory: resource.MustParse("256Mi")},
			Storage:   outpostv1.InstanceStorage{Size: resource.MustParse("64Mi")},
		}}
		inst.Namespace, inst.Name = "default", name
		return inst
	}
	restored := instance("restored")
	restored.Spec.Bootstrap.Recovery = &outpostv1.RecoveryBootstrap{Source: "gone", ObjectStore: outpostv1.LocalObjectReference{Name: "s3"}}

	obs, err := rt.EnsureInstance(ctx, restored)
	if err != nil || obs.Ready || obs.Reason != "Restoring" {
		t.Fatalf("instance being restored: %+v %v, want Reason Restoring", obs, err)
	}
	// The restore hangs on the object store; another instance comes up.
	other := instance("other")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		obs, err := rt.EnsureInstance(ctx, other)
		if err != nil {
			t.Fatalf("other instance: %v", err)
		}
		if obs.Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other instance did not come up while a restore ran: %+v", obs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if obs, err := rt.EnsureInstance(ctx, restored); err != nil || obs.Reason != "Restoring" {
		t.Fatalf("instance being restored, after the other came up: %+v %v", obs, err)
	}
	// The object store goes away for good: the restore fails and says why.
	stall.release()
	deadline = time.Now().Add(time.Minute)
	for {
		_, err := rt.EnsureInstance(ctx, restored)
		if err != nil {
			if !strings.Contains(err.Error(), "unreachable") {
				t.Fatalf("failed restore: %v, want it to say the object store is unreachable", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the restore did not fail after the object store went away")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
