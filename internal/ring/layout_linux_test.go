//go:build linux

package ring

import (
	"testing"
	"unsafe"

	"github.com/vchan-go/vchan/internal/xenlayout"
)

// TestLayoutMatchesLibxenvchan proves the shared-page offsets of layout.go
// (docs/PROTOCOL.md §1.1, §1.2) and the notify bits (§4) against struct
// ring_shared and struct vchan_interface of Xen's own libxenvchan.h,
// compiled with gcc. The header includes <xen/io/libxenvchan.h>,
// <xen/xen.h>, <xenevtchn.h> and <xengnttab.h>; CPATH puts the unpacked
// package's include directory ahead of the system's so that all of them
// come from libxen-dev.
func TestLayoutMatchesLibxenvchan(t *testing.T) {
	xenlayout.UseInteropHeaders(t, "libxenvchan.h")

	off := func(field string) string { return "offsetof(struct vchan_interface, " + field + ")" }
	size := func(field string) string { return "sizeof(((struct vchan_interface *)0)->" + field + ")" }
	var l Layout
	xenlayout.Compare(t, []string{"libxenvchan.h"}, []xenlayout.Check{
		// struct ring_shared: cons, then prod, 8 bytes; the left and right
		// pairs are two of them back to back.
		{Name: "sizeof(ring_shared)", C: "sizeof(struct ring_shared)", Go: offRightCons - offLeftCons},
		{Name: "ring_shared.cons", C: "offsetof(struct ring_shared, cons)", Go: offLeftCons},
		{Name: "ring_shared.prod", C: "offsetof(struct ring_shared, prod)", Go: offLeftProd - offLeftCons},
		{Name: "sizeof(ring_shared.prod)", C: "sizeof(((struct ring_shared *)0)->prod)", Go: offRightCons - offLeftProd},

		// struct vchan_interface, field by field.
		{Name: "left", C: off("left"), Go: offLeftCons},
		{Name: "left.cons", C: off("left.cons"), Go: offLeftCons},
		{Name: "left.prod", C: off("left.prod"), Go: offLeftProd},
		{Name: "right", C: off("right"), Go: offRightCons},
		{Name: "right.cons", C: off("right.cons"), Go: offRightCons},
		{Name: "right.prod", C: off("right.prod"), Go: offRightProd},
		{Name: "left_order", C: off("left_order"), Go: offLeftOrder},
		{Name: "right_order", C: off("right_order"), Go: offRightOrder},
		{Name: "cli_live", C: off("cli_live"), Go: OffCliLive},
		{Name: "srv_live", C: off("srv_live"), Go: OffSrvLive},
		{Name: "cli_notify", C: off("cli_notify"), Go: offCliNotify},
		{Name: "srv_notify", C: off("srv_notify"), Go: offSrvNotify},
		{Name: "grants", C: off("grants"), Go: offGrants},
		{Name: "sizeof(vchan_interface)", C: "sizeof(struct vchan_interface)", Go: HeaderSize},

		// Field sizes. The orders are read as Layout's uint16s; the four
		// single-byte fields must tile the 32-bit word at offLiveWord that
		// endpoint.go accesses atomically, which also needs the word
		// 4-byte aligned; each grant ref is read as a uint32.
		{Name: "sizeof(left_order)", C: size("left_order"), Go: uint64(unsafe.Sizeof(l.Left))},
		{Name: "sizeof(right_order)", C: size("right_order"), Go: uint64(unsafe.Sizeof(l.Right))},
		{Name: "live_word", C: off("cli_live"), Go: offLiveWord},
		{Name: "sizeof(cli_live)", C: size("cli_live"), Go: OffSrvLive - OffCliLive},
		{Name: "sizeof(srv_live)", C: size("srv_live"), Go: offCliNotify - OffSrvLive},
		{Name: "sizeof(cli_notify)", C: size("cli_notify"), Go: offSrvNotify - offCliNotify},
		{Name: "sizeof(srv_notify)", C: size("srv_notify"), Go: offGrants - offSrvNotify},
		{Name: "live_word%4", C: off("cli_live") + " % 4", Go: 0},
		{Name: "alignof(vchan_interface)", C: "_Alignof(struct vchan_interface)", Go: uint64(unsafe.Alignof(uint32(0)))},
		{Name: "sizeof(grants[0])", C: size("grants[0]"), Go: uint64(unsafe.Sizeof(uint32(0)))},

		// Notify request bits.
		{Name: "VCHAN_NOTIFY_WRITE", C: "VCHAN_NOTIFY_WRITE", Go: NotifyWrite},
		{Name: "VCHAN_NOTIFY_READ", C: "VCHAN_NOTIFY_READ", Go: NotifyRead},
	})
}
