/*
 * The client side of the vchan-simd control protocol, in C, for the shim
 * libraries that stand in for libxengnttab, libxenevtchn and libxenctrl
 * under Xen's unmodified C binaries. The protocol is documented at the top
 * of internal/simd/simproto/proto.go; internal/simd/simclient is the Go
 * client.
 *
 * One handle (xengnttab_open, xengntshr_open, xenevtchn_open) is one
 * control connection, as one handle is one open /dev/xen device: the
 * daemon unbinds a connection's ports and unmaps its regions (firing their
 * unmap notifications) when the connection closes, as the kernel does when
 * the device file is released, and so also when the process dies.
 */
#ifndef VCHAN_SIM_SHIM_H
#define VCHAN_SIM_SHIM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Requests (proto.go). */
enum {
	SIMD_HELLO = 1,
	SIMD_SHARE,
	SIMD_MAP,
	SIMD_UNMAP,
	SIMD_BIND_UNBOUND,
	SIMD_BIND_INTERDOMAIN,
	SIMD_NOTIFY,
	SIMD_UNBIND, /* op 9, notify_async, is retired (protocol version 3) */
};

/* Unmap notification flags, as in <xen/gntalloc.h>. */
#define SIMD_NOTIFY_CLEAR_BYTE 1u
#define SIMD_NOTIFY_SEND_EVENT 2u

/* The most descriptors one reply carries (SCM_MAX_FD). */
#define SIMD_MAX_FDS 253
/* The largest message (maxMsg in proto.go). */
#define SIMD_MAX_MSG (64 << 10)

struct simd_conn {
	int ctl;            /* the control socket (SOCK_SEQPACKET) */
	int ev;             /* the event socket from hello: its hang-up is the daemon's end */
	uint16_t domid;     /* this process's domain */
	pthread_mutex_t mu; /* one request outstanding at a time */
};

/*
 * simd_open joins the simulator as the domain named by VCHAN_HOST=sim:<N>,
 * in $VCHAN_SIM_DIR (else $XDG_RUNTIME_DIR/vchan-sim, else
 * /tmp/vchan-sim-<uid>, as Go's simd.DefaultDir). It returns 0, or -1 with
 * errno set and a message on stderr. what names the caller in messages.
 */
int simd_open(struct simd_conn *c, const char *what);

/* simd_close closes both sockets. */
void simd_close(struct simd_conn *c);

/*
 * simd_call sends the request req (nreq words) and reads the reply into
 * rep (room for maxrep words, after the status), setting *nrep. The
 * descriptors passed with the reply go to fds (room for SIMD_MAX_FDS) and
 * *nfds, if fds is not NULL; otherwise they are closed. It returns 0, or -1
 * with errno set (a failure status from the daemon is mapped to an errno
 * and its message printed on stderr).
 */
int simd_call(struct simd_conn *c, const uint32_t *req, size_t nreq,
	      uint32_t *rep, size_t maxrep, size_t *nrep, int *fds, int *nfds);

/* simd_closefds closes n descriptors. */
void simd_closefds(const int *fds, int n);

#endif
