// Command kube is every Kubernetes component a one-node cluster needs, built
// from the Kubernetes Go modules as one multi-call binary: machines that can
// reach only the Go module proxy get a real apiserver, kubelet,
// controller-manager, scheduler, kube-proxy and kubectl from one compile and
// one link, instead of six links of mostly the same code.
//
// The component is chosen by the name the binary is run as (install-deps
// makes kube-apiserver, kubelet, ... symlinks to it), or by the first
// argument when it is run as kube:
//
//	kubelet --config ...
//	kube kubelet --config ...
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

var components = map[string]func() *cobra.Command{
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	"kube-proxy":              proxy.NewProxyCommand,
	"kubelet":                 func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
	"kubectl":                 cmd.NewDefaultKubectlCommand,
}

func main() {
	name := filepath.Base(os.Args[0])
	if _, ok := components[name]; !ok && len(os.Args) > 1 {
		// Run as `kube COMPONENT ...`: cobra parses os.Args[1:], so the
		// component's own arguments must start at os.Args[1].
		name = os.Args[1]
		os.Args = append([]string{name}, os.Args[2:]...)
	}
	newCommand, ok := components[name]
	if !ok {
		names := make([]string, 0, len(components))
		for n := range components {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "kube: run as (or with a first argument of) one of %v\n", names)
		os.Exit(2)
	}
	os.Exit(cli.Run(newCommand()))
}
