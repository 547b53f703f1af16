// Package e2e drives the outpost binary the way a person at a terminal
// does: `outpost up` in a fresh directory, psql against what it serves,
// manifests dropped and edited, processes killed. Everything it checks is
// what that person would see.
package e2e
