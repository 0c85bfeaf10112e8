//go:build unix

package main

import (
	"os"
	"os/exec"
	"syscall"
)

// ownGroup makes cmd lead a process group of its own, so that signalGroup
// reaches the command's children too.
func ownGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// signalGroup sends s to the process group that p leads.
func signalGroup(p *os.Process, s syscall.Signal) { syscall.Kill(-p.Pid, s) }
