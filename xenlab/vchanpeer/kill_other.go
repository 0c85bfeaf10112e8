//go:build !linux

package main

import (
	"os"
	"time"
)

// killAndWait kills process pid; without pidfds it cannot tell when the
// process is gone, so dead is 0.
func killAndWait(pid int) (killed, dead int64, err error) {
	p, err := os.FindProcess(pid)
	if err != nil {
		return 0, 0, err
	}
	killed = time.Now().UnixNano()
	return killed, 0, p.Kill()
}
