package main

import (
	"bytes"
	"regexp"
	"testing"
)

func TestVersionPrintsVersionAndPlatform(t *testing.T) {
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^outpost \S+ \(go1\.\d+[^,]*, linux/\w+\)\n$`).MatchString(out.String()) {
		t.Errorf("outpost version printed %q", out.String())
	}
}
