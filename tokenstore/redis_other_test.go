//go:build !linux

package tokenstore

import "os/exec"

func setPdeathsig(*exec.Cmd) {}
