// Command etcd is etcd built from its Go modules, so that envtest has an etcd
// on machines that can reach only the Go module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
