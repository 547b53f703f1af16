package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

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

// TestEveryGroupRefusesAnUnknownSubcommand walks the whole tree, so a group
// added later cannot slip back to cobra's help-and-exit-0, and checks the
// exit code main gives the error.
func TestEveryGroupRefusesAnUnknownSubcommand(t *testing.T) {
	var groups [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.HasSubCommands() && len(path) > 0 {
			groups = append(groups, path)
		}
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(newRootCommand(), nil)
	if len(groups) < 5 {
		t.Fatalf("found only the groups %v", groups)
	}
	for _, g := range groups {
		cmd := newRootCommand()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(append(g, "no-such-command"))
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), `unknown command "no-such-command"`) {
			t.Errorf("outpost %s no-such-command: %v, want an unknown command error", strings.Join(g, " "), err)
		} else if code := exitCode(err); code != 1 {
			t.Errorf("outpost %s no-such-command exits %d, want 1", strings.Join(g, " "), code)
		}
	}
}
