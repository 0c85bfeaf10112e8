//go:build !unix

package main

import (
	"os"
	"os/exec"
	"syscall"
)

// Without process groups (Windows), only the command itself is signalled;
// of the signals, only SIGKILL works there.

func ownGroup(*exec.Cmd) {}

func signalGroup(p *os.Process, s syscall.Signal) { p.Signal(s) }
