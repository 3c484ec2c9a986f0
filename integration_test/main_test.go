// Package integration_test holds amobridge's end-to-end tests: a real Caddy
// binary built with the module (bin/caddy, built once by scripts/build.sh in
// TestMain) runs as a child process in front of the strict fake amoCRM of
// package fakeamocrm, everything on 127.0.0.1, and the tests speak to it over
// HTTP only, the way legacy clients do.
//
// Run them with `make test` (or `go test ./integration_test/`). Set
// AMOBRIDGE_SKIP_INTEGRATION=1 to skip them; AMOBRIDGE_KEEP_TEST_DIRS=1 keeps
// each test's Caddy directory (configs, logs, store) for inspection.
package integration_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// skipEnv turns the integration tests off.
const skipEnv = "AMOBRIDGE_SKIP_INTEGRATION"

var (
	// repoRoot is the repository's root directory.
	repoRoot string
	// caddyBin is the Caddy binary with the module, built by TestMain.
	caddyBin string
	// skipReason, when set, makes every test skip.
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Getenv(skipEnv) == "1" {
		skipReason = skipEnv + "=1: the integration tests are skipped"
		fmt.Println("integration_test:", skipReason)
		return m.Run()
	}
	root, err := findRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration_test:", err)
		return 1
	}
	repoRoot = root
	caddyBin = filepath.Join(root, "bin", "caddy")
	if err := buildCaddy(root); err != nil {
		fmt.Fprintln(os.Stderr, "integration_test: building Caddy with the module failed:", err)
		return 1
	}
	return m.Run()
}

// findRoot returns the directory of the module's go.mod, above the test's
// working directory (go test runs tests in the package's directory).
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/amobridge/amobridge\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("the amobridge repository root (go.mod) was not found above the working directory")
		}
		dir = parent
	}
}

// buildCaddy runs scripts/build.sh once; it does nothing when bin/caddy is
// newer than every source. Its own progress lines are shown; xcaddy's output
// only when the build fails.
func buildCaddy(root string) error {
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "build.sh"))
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "build.sh:") {
			fmt.Println("integration_test:", line)
		}
	}
	if err != nil {
		return fmt.Errorf("%w\n%s", err, tail(out.String(), 80))
	}
	return nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// needCaddy skips t when the integration tests are turned off.
func needCaddy(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}
