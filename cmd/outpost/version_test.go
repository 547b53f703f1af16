package main

import (
	"bytes"
	"regexp"
	"strings"
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

func TestUnknownSubcommandIsAnError(t *testing.T) {
	for _, args := range [][]string{{"backup", "kye"}, {"hub", "site", "rotat"}, {"usage", "exprot"}} {
		cmd := newRootCommand()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(args)
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), `unknown command "`+args[len(args)-1]+`"`) {
			t.Errorf("outpost %s: %v, want an unknown command error", strings.Join(args, " "), err)
		}
	}
	// The control: a group command alone still shows its help and succeeds.
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"backup"})
	if err := cmd.Execute(); err != nil || !strings.Contains(out.String(), "Available Commands") {
		t.Errorf("outpost backup: %v, printed %q; want its help", err, out.String())
	}
}
