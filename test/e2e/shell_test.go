package e2e

import (
	"os/exec"
	"strings"
)

// runShell runs a command line as a user's shell would.
func runShell(line string) (string, error) {
	out, err := exec.Command("sh", "-c", line).CombinedOutput()
	return string(out), err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
