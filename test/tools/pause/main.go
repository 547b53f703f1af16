// Command pause is the sandbox ("pause") image of the test cluster: the
// first process of every pod, which holds the pod's namespaces open. It
// waits for SIGTERM or SIGINT, and as PID 1 of the pod's PID namespace
// reaps every child that is re-parented to it, so no zombie stays behind.
//
// There is no registry here to pull registry.k8s.io/pause from, so the
// cluster harness builds this program (static, CGO_ENABLED=0) and packs it
// as the image containerd's sandbox_image names.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	children := make(chan os.Signal, 1)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			return
		case <-children:
			reap()
		}
	}
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
