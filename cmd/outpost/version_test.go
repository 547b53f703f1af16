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

func TestUnknownCommandIsAnError(t *testing.T) {
	cmd := newRootCommand()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"frobnicate"})
	if err := cmd.Execute(); err == nil {
		t.Error("an unknown command succeeded")
	}
}
