// Command kube-apiserver is the Kubernetes API server built from its Go
// modules, so that envtest has a real apiserver on machines that can reach only
// the Go module proxy.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() { os.Exit(cli.Run(app.NewAPIServerCommand())) }
