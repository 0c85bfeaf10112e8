//go:build linux

package gnt

// Errors of the real grant devices that say what went wrong and how to fix
// it: which module to load, which limit to raise and how.

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/xendev"
)

// devInfo names one grant device for error messages.
type devInfo struct {
	xendev.Device
	limit string // the module's limit parameter in sysfs
}

var (
	gntallocDev = devInfo{
		Device: xendev.Device{Path: "/dev/xen/gntalloc", Module: "xen-gntalloc"},
		limit:  "/sys/module/xen_gntalloc/parameters/limit",
	}
	gntdevDev = devInfo{
		Device: xendev.Device{Path: "/dev/xen/gntdev", Module: "xen-gntdev"},
		limit:  "/sys/module/xen_gntdev/parameters/limit",
	}
)

// errClosedHandle is returned by Share and Map after Close.
var errClosedHandle = errors.New("gnt: use of closed grant device handle")

// errClosedRegion is returned by a second Region.Close.
var errClosedRegion = errors.New("gnt: region already closed")

// readLimit returns the current value of a module's limit parameter, or ""
// if it cannot be read.
func readLimit(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// raiseHint says how to raise a module's limit parameter. cur is its current
// value ("" if unknown) and need the number of grants the failed call asked
// for.
func raiseHint(param, cur string, need int) string {
	n, err := strconv.Atoi(cur)
	if err != nil || n < 0 {
		return fmt.Sprintf("raise it as root with: echo N > %s (N larger than the current value)", param)
	}
	want := 2 * n
	if want < n+need {
		want = n + need
	}
	return fmt.Sprintf("its current value is %d; raise it as root with: echo %d > %s", n, want, param)
}

// allocNoSpaceError explains ENOSPC from IOCTL_GNTALLOC_ALLOC_GREF: the
// driver's global grant limit (docs/PROTOCOL.md §10), which also counts pages
// that were released here but are still mapped by another domain. cur is
// the limit's current value, "" if unknown.
func allocNoSpaceError(peer uint16, count int, errno error, cur string) error {
	return fmt.Errorf("gntalloc: share %d pages with domain %d: %w: %w: gntalloc allows a fixed number of grants "+
		"at once in this domain, counting pages a peer still maps after they were released here "+
		"(%s); %s; if the limit is not the cause, the domain's grant table is full "+
		"(raise gnttab_max_frames in its Xen configuration)",
		count, peer, errno, ErrNoSpace, gntallocDev.limit, raiseHint(gntallocDev.limit, cur, count))
}

// mapLimitError explains a refused IOCTL_GNTDEV_MAP_GRANT_REF with a valid
// count: recent drivers limit the pages of one request (EINVAL), older ones
// the pages mapped in total (ENOMEM); both through the limit parameter. cur
// is its current value, "" if unknown.
func mapLimitError(peer uint16, count int, errno error, cur string) error {
	return fmt.Errorf("gntdev: map %d pages from domain %d: %w: %w: gntdev limits the pages one request "+
		"(recent kernels) or all mappings (older kernels) may map (%s); %s",
		count, peer, errno, ErrNoSpace, gntdevDev.limit, raiseHint(gntdevDev.limit, cur, count))
}

// badRefError explains a failed mmap of granted pages: Xen refused at least
// one grant.
func badRefError(peer uint16, refs []Ref, errno error) error {
	return fmt.Errorf("gntdev: map grant references %s from domain %d: %w: %w: a reference is not granted to this "+
		"domain by domain %d, was already revoked, or is granted read-only and was mapped writable",
		fmtRefs(refs), peer, errno, ErrBadRef, peer)
}

// fmtRefs lists grant references for an error message, abbreviated when
// there are many.
func fmtRefs(refs []Ref) string {
	const show = 8
	if len(refs) <= show {
		return fmt.Sprint(refs)
	}
	return fmt.Sprintf("%v (and %d more)", refs[:show], len(refs)-show)
}

// notifyError explains a failed SET_UNMAP_NOTIFY.
func notifyError(dev string, n *UnmapNotify, errno error) error {
	hint := ""
	if errors.Is(errno, unix.EINVAL) && n.SendEvent {
		hint = fmt.Sprintf(": event channel port %d must be bound through /dev/xen/evtchn in this domain", n.Port)
	}
	return fmt.Errorf("%s: set unmap notify (offset %d, clear byte %t, event %t, port %d): %w%s",
		dev, n.Offset, n.ClearByte, n.SendEvent, n.Port, errno, hint)
}
