//go:build linux

package tokenstore

import (
	"os/exec"
	"syscall"
)

// setPdeathsig makes cmd die with the test process, so that a test killed
// by its timeout leaves no redis-server behind.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
