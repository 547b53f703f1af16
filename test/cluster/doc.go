// Package cluster runs Outpost on a real one-node Kubernetes cluster
// (test/harness/cluster) the way a user would: `helm install` of
// charts/outpost with images built here (package bundle/image) and loaded
// into the node's containerd, `kubectl apply` of Outpost's resources,
// `kubectl get` to watch them, then SQL with pgx to the instance through
// its Service, verifying the server by its Service name with the CA from
// the application's Secret.
//
// It shows what envtest cannot: a real kubelet runs the pods, mounts their
// volumes with fsGroup, restarts them, and probes them. One cluster and
// one Helm release serve the whole package (TestMain, install_test.go);
// the upgrade test uses a release of its own, so it can uninstall it.
package cluster
