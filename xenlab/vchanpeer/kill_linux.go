//go:build linux

package main

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// killAndWait sends SIGKILL to process pid and waits until it has exited:
// a pidfd turns readable once the process's memory and files are released,
// so the unmap notifications of its vchans have been sent by then. It
// returns both times (unix ns); dead is 0 if the process was not gone after
// 10 s. The pidfd is opened before the signal, so a reused pid cannot be
// mistaken for the victim.
func killAndWait(pid int) (killed, dead int64, err error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(fd)
	killed = time.Now().UnixNano()
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		return 0, 0, err
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 10000)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return killed, 0, err
		}
		if n == 0 {
			return killed, 0, nil
		}
		return killed, time.Now().UnixNano(), nil
	}
}
