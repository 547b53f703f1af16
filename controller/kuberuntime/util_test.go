package kuberuntime_test

import "slices"

func sorted(s []string) []string { slices.Sort(s); return s }

func slicesContains(s []string, v string) bool { return slices.Contains(s, v) }
