//go:build !unix

package main

import "os"

// killProcess kills process pid (no kill(2) here).
func killProcess(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
