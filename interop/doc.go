// Package interop holds the tests that prove wire compatibility with Xen's
// real C library, libxenvchan, and its tool vchan-socket-proxy, unmodified
// Debian binaries, on the cross-process simulator (vchan-simd). Shim
// libraries (shim/) stand in for libxengnttab, libxenevtchn and libxenctrl;
// the real libxenstore talks to the simulator's xenstored sockets. See
// README.md. The package has no code outside its tests.
package interop
