//go:build linux

package xendev

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestIOCNone checks the encoding against request numbers from the Linux
// headers as amd64 compiles them (docs/PROTOCOL.md §10 and §12); the gnt and
// evtchn layout tests check every number they use with gcc.
func TestIOCNone(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  byte
		nr   byte
		size uintptr
		want uintptr
	}{
		{"IOCTL_GNTALLOC_ALLOC_GREF", 'G', 5, 24, 0x00184705},
		{"IOCTL_GNTDEV_MAP_GRANT_REF", 'G', 0, 24, 0x00184700},
		{"IOCTL_EVTCHN_BIND_INTERDOMAIN", 'E', 1, 8, 0x00084501},
		{"IOCTL_EVTCHN_RESET", 'E', 5, 0, 0x00004505},
	} {
		if got := IOCNone(tc.typ, tc.nr, tc.size); got != tc.want {
			t.Errorf("%s = %#08x, want %#08x", tc.name, got, tc.want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("IOCNone accepted a size that does not fit 14 bits")
		}
	}()
	IOCNone('G', 0, 1<<14)
}

// TestIoctl passes a pointer through and back: TIOCINQ (FIONREAD) on a pipe writes
// the number of bytes waiting.
func TestIoctl(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := unix.Write(p[1], []byte("abc")); err != nil {
		t.Fatal(err)
	}
	var n int32
	if r, err := Ioctl(p[0], unix.TIOCINQ, unsafe.Pointer(&n)); err != nil || r != 0 || n != 3 {
		t.Errorf("TIOCINQ = %d, %v, %d bytes; want 0, nil, 3", r, err, n)
	}
	if r, err := Ioctl(p[0], IOCNone('G', 5, 24), unsafe.Pointer(&n)); err != unix.ENOTTY || r != -1 {
		t.Errorf("a gntalloc ioctl on a pipe = %d, %v; want -1, ENOTTY", r, err)
	}
}

func TestOpenErrorHints(t *testing.T) {
	d := Device{Path: "/dev/xen/gntdev", Module: "xen-gntdev"}
	for _, tc := range []struct {
		errno unix.Errno
		want  string
	}{
		{unix.ENOENT, "open /dev/xen/gntdev: no such file or directory: not running under Xen, " +
			"or the xen-gntdev module is not loaded (try: modprobe xen-gntdev)"},
		{unix.EACCES, "open /dev/xen/gntdev: permission denied: run as root or give this user access to /dev/xen/gntdev"},
		{unix.EPERM, "open /dev/xen/gntdev: operation not permitted: run as root or give this user access to /dev/xen/gntdev"},
		{unix.ENODEV, "open /dev/xen/gntdev: no such device: the device node exists but no driver serves it: " +
			"the xen-gntdev module is not loaded, or this is not a Xen domain " +
			"(the module refuses to load outside Xen; try: modprobe xen-gntdev)"},
		{unix.ENXIO, "no driver serves it"},
		{unix.EIO, "open /dev/xen/gntdev: input/output error"},
	} {
		err := OpenError(d, tc.errno)
		if tc.errno == unix.EIO {
			if got := err.Error(); got != tc.want {
				t.Errorf("OpenError(%v) = %q, want no hint: %q", tc.errno, got, tc.want)
			}
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenError(%v) = %q, want it to contain %q", tc.errno, err, tc.want)
		}
		if !errors.Is(err, tc.errno) {
			t.Errorf("OpenError(%v) does not wrap the errno", tc.errno)
		}
		var pe *os.PathError
		if !errors.As(err, &pe) || pe.Path != d.Path {
			t.Errorf("OpenError(%v) does not wrap an *os.PathError for the device", tc.errno)
		}
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	missing := Device{Path: filepath.Join(dir, "gntalloc"), Module: "xen-gntalloc"}
	if fd, err := Open(missing, 0); fd != -1 || !errors.Is(err, unix.ENOENT) ||
		!strings.Contains(err.Error(), "modprobe xen-gntalloc") {
		t.Errorf("Open of a missing device = %d, %v; want -1 and the modprobe hint", fd, err)
	}

	present := Device{Path: filepath.Join(dir, "evtchn"), Module: "xen-evtchn"}
	if err := os.WriteFile(present.Path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := Open(present, unix.O_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fl&unix.O_ACCMODE != unix.O_RDWR || fl&unix.O_NONBLOCK == 0 {
		t.Errorf("file status flags %#x: want read-write and non-blocking", fl)
	}
	if fdfl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || fdfl&unix.FD_CLOEXEC == 0 {
		t.Errorf("descriptor flags %#x, %v: want close-on-exec", fdfl, err)
	}
}
