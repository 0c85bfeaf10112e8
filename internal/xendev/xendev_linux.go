//go:build linux

package xendev

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The asm-generic _IOC encoding, used by x86 and Arm, the architectures Xen
// guests run on: dir<<30 | size<<16 | type<<8 | nr.
const (
	iocDirShift  = 30
	iocSizeShift = 16
	iocTypeShift = 8
	iocSizeBits  = 14
	iocNone      = 0 // _IOC_NONE: every Xen device ioctl uses it
)

// IOCNone returns the ioctl request number _IOC(_IOC_NONE, typ, nr, size),
// the form of every request of the Xen devices (docs/PROTOCOL.md §10, §11 and §12).
// size is the C argument struct's, so a request number differs between
// 386 and amd64 exactly where C's does. It panics if size does not fit the
// encoding, which C rejects at compile time.
func IOCNone(typ byte, nr byte, size uintptr) uintptr {
	if size >= 1<<iocSizeBits {
		panic(fmt.Sprintf("xendev: ioctl argument of %d bytes does not fit _IOC", size))
	}
	return iocNone<<iocDirShift | size<<iocSizeShift | uintptr(typ)<<iocTypeShift | uintptr(nr)
}

// Ioctl issues one ioctl whose argument is a pointer (nil for none) and
// returns the system call's result, which some requests use: the evtchn bind
// requests return the new port (docs/PROTOCOL.md §12). It retries when a
// signal interrupts the call. The conversion to uintptr is written in the
// call to unix.Syscall so that the pointed-to memory stays alive and in
// place for the call (package unsafe, rule 4).
func Ioctl(fd int, req uintptr, arg unsafe.Pointer) (int, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if e != unix.EINTR {
			return ioctlResult(r, e)
		}
	}
}

// IoctlNoWait is Ioctl for a request that never waits in the kernel (an
// event-channel notify: one hypercall). It does not tell the runtime that
// the thread is in a system call: on Xen PV under emulation even such a
// call outlasts two ticks of the runtime's monitor thread, which then
// hands the goroutine's P to another thread (with one P, always), a futex
// wake-up and a scheduler pass for a call that was never going to block
// (docs/PERFORMANCE.md, "Calls that never wait").
func IoctlNoWait(fd int, req uintptr, arg unsafe.Pointer) (int, error) {
	for {
		r, _, e := unix.RawSyscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if e != unix.EINTR {
			return ioctlResult(r, e)
		}
	}
}

// ioctlResult is what Ioctl and IoctlNoWait return for a call that was
// not interrupted.
func ioctlResult(r uintptr, e unix.Errno) (int, error) {
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// Device names a Xen device node and the kernel module that serves it, for
// error messages.
type Device struct {
	Path   string // /dev/xen/gntalloc
	Module string // xen-gntalloc
}

// Open opens d read-write and close-on-exec, as the Xen libraries do, with
// extra open flags (unix.O_NONBLOCK), retrying when a signal interrupts it.
// A failure says what is missing and how to fix it (OpenError).
func Open(d Device, flags int) (int, error) {
	for {
		fd, err := unix.Open(d.Path, unix.O_RDWR|unix.O_CLOEXEC|flags, 0)
		switch {
		case err == nil:
			return fd, nil
		case err != unix.EINTR:
			return -1, OpenError(d, err)
		}
	}
}

// OpenError explains a failed open of d: what is missing and how to fix it.
// The result wraps an *os.PathError for d.Path, which wraps errno.
func OpenError(d Device, errno error) error {
	pe := &os.PathError{Op: "open", Path: d.Path, Err: errno}
	var hint string
	switch {
	case errors.Is(errno, unix.ENOENT):
		hint = fmt.Sprintf("not running under Xen, or the %s module is not loaded (try: modprobe %s)", d.Module, d.Module)
	case errors.Is(errno, unix.EACCES), errors.Is(errno, unix.EPERM):
		hint = "run as root or give this user access to " + d.Path
	case errors.Is(errno, unix.ENODEV), errors.Is(errno, unix.ENXIO):
		hint = fmt.Sprintf("the device node exists but no driver serves it: the %s module is not loaded, "+
			"or this is not a Xen domain (the module refuses to load outside Xen; try: modprobe %s)", d.Module, d.Module)
	default:
		return pe
	}
	return fmt.Errorf("%w: %s", pe, hint)
}
