//go:build unix

package main

import "syscall"

// killProcess sends SIGKILL to process pid.
func killProcess(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
