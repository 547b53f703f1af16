// Package cluster starts a real one-node Kubernetes cluster for a test
// binary and stops it again: etcd and kube-apiserver (through envtest, as
// package harness starts them), kube-controller-manager, kube-scheduler,
// containerd with runc and the CNI bridge, kubelet, kube-proxy and CoreDNS.
// One cluster is meant to serve a whole `go test` run (start it in
// TestMain): it costs seconds to start and most of a CPU core to run.
//
// The node lives in its own network namespace (netns.go), reached from the
// host through a veth pair and host routes to the pod and service CIDRs,
// with no default route, so nothing in it reaches past this machine and the
// host's ip_forward stays off. Images come from docker-archive tarballs
// imported into containerd (containerd.go); pods must use imagePullPolicy
// Never. The sandbox image is the project's own pause program
// (pauseimage.go).
//
// Files: checks.go fails loudly on every missing binary or kernel feature;
// netns.go the network; certs.go the cluster's certificates; containerd.go,
// controlplane.go, node.go and dns.go the processes; storage.go the local
// StorageClass and PersistentVolumes; teardown.go what Stop undoes, by PID
// and by path, touching only what Start made. The settings and why each is
// needed are in the comments of each file (and in the project's notes on
// kubernetes-node).
package cluster
