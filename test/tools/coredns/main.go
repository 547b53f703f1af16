// Command coredns is CoreDNS with only the plugins a one-node test cluster's
// DNS needs, built from its Go module so that machines that reach only the Go
// module proxy can resolve Service names inside pods.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins a Corefile for cluster DNS uses; each registers itself.
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The plugins run in the order of this list, whatever the Corefile's order,
// as in CoreDNS's own generated list.
func init() {
	dnsserver.Directives = []string{
		"bind", "ready", "health", "errors", "log", "cache", "loadbalance", "kubernetes",
	}
}

func main() { coremain.Run() }
