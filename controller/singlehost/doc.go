// Package singlehost is Outpost on one host without Kubernetes: the state
// directory's layout, `outpost up` (controldb, the dir source and the local
// runtime wired together), the kubectl-like commands that read and write
// the manifests directory (apply, get, describe, delete, psql), and the work
// behind the featurestore, backup and usage commands on this host, so that
// cmd/outpost only parses flags and prints. Lookups of declared objects (an
// instance's ObjectStore, a Backup's instance, a FeatureStore) answer from
// accepted state, see lookup.go.
package singlehost
