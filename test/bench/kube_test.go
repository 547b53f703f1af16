package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/test/harness"
)

// Goals of BenchmarkKubernetesRuntime200Instances.
const (
	kubeInstances   = 200
	kubeGoalSeconds = 30
	kubeGoalRSSMB   = 150
)

// BenchmarkKubernetesRuntime200Instances creates 200 PostgresInstances at
// once in envtest and measures how long the real `outpost controller
// --runtime kubernetes` takes until every one is reconciled (its
// StatefulSet exists and its status is written), and the controller
// process's peak RSS (VmHWM). Goals: at most 30 s and 150 MB.
func BenchmarkKubernetesRuntime200Instances(b *testing.B) {
	api := harness.StartAPIServer(b)
	dir := harness.TempDir(b)
	bin := filepath.Join(dir, "outpost")
	build := exec.Command("go", "build", "-o", bin, "./cmd/outpost")
	build.Dir = harness.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build outpost: %v\n%s", err, out)
	}
	logf, err := os.Create(filepath.Join(dir, "controller.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	ctrl := exec.Command(bin, "controller", "--source", "kubernetes", "--runtime", "kubernetes",
		"--kubeconfig", api.Kubeconfig, "--instance-image", "outpost/instance:bench", "--log-level", "warn")
	ctrl.Stdout, ctrl.Stderr = logf, logf
	if err := ctrl.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { ctrl.Wait(); close(done) }()
	b.Cleanup(func() {
		ctrl.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			ctrl.Process.Kill()
			<-done
		}
	})

	c := api.Client
	ctx := context.Background()
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ns := "bench-" + strconv.Itoa(i)
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		createInstances(b, c, ns)
		waitReconciled(b, c, ns, 5*time.Minute)
		elapsed := time.Since(start)
		total += elapsed
		b.Logf("iteration %d: %d instances reconciled in %s", i, kubeInstances, elapsed.Round(time.Millisecond))
	}
	b.StopTimer()
	rss := peakRSSMB(b, ctrl.Process.Pid)
	secs := total.Seconds() / float64(b.N)
	b.ReportMetric(secs, "s/200-instances")
	b.ReportMetric(secs/kubeGoalSeconds, "ratio-to-30s-goal")
	b.ReportMetric(rss, "peak-RSS-MB")
	b.ReportMetric(rss/kubeGoalRSSMB, "ratio-to-150MB-goal")
}

func createInstances(b *testing.B, c client.Client, ns string) {
	var wg sync.WaitGroup
	errs := make(chan error, kubeInstances)
	sem := make(chan struct{}, 16)
	for j := 0; j < kubeInstances; j++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- c.Create(context.Background(), &outpostv1.PostgresInstance{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pg-%03d", j), Namespace: ns},
				Spec: outpostv1.PostgresInstanceSpec{
					Resources:  outpostv1.InstanceResources{CPU: resource.MustParse("1"), Memory: resource.MustParse("1Gi")},
					Storage:    outpostv1.InstanceStorage{Size: resource.MustParse("10Gi")},
					Extensions: []outpostv1.Extension{"vector"},
				},
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

// waitReconciled waits until every instance in ns has a status for its
// generation and a StatefulSet.
func waitReconciled(b *testing.B, c client.Client, ns string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		var insts outpostv1.PostgresInstanceList
		var sets appsv1.StatefulSetList
		if err := c.List(context.Background(), &insts, client.InNamespace(ns)); err != nil {
			b.Fatal(err)
		}
		if err := c.List(context.Background(), &sets, client.InNamespace(ns)); err != nil {
			b.Fatal(err)
		}
		done := 0
		for _, inst := range insts.Items {
			if inst.Status.ObservedGeneration == inst.Generation && inst.Status.Phase != "" {
				done++
			}
		}
		if done == kubeInstances && len(sets.Items) == kubeInstances {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("after %s: %d of %d instances have status, %d StatefulSets", timeout, done, kubeInstances, len(sets.Items))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// peakRSSMB is the process's high-water mark of resident memory.
func peakRSSMB(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	b.Fatal("no VmHWM in /proc/PID/status")
	return 0
}
