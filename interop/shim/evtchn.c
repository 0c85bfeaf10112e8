/*
 * libxenevtchn.so.1 over vchan-simd: the event channel functions
 * libxenvchan calls, with the semantics of Xen 4.17's
 * tools/libs/evtchn/linux.c (PROTOCOL.md §12). The event socket the daemon
 * hands out at hello behaves like /dev/xen/evtchn (read pending ports as
 * u32s, write them back to unmask), so xenevtchn_fd returns it as is and
 * select() on it works. Exported under the symbol version VERS_1.0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <xenevtchn.h>

#include "simd.h"

struct xenevtchn_handle {
	struct simd_conn c;
};

/*
 * The process joins the simulator as its domain when the library loads,
 * and stays joined until it exits: a simulated domain lives only while a
 * process is joined as it, and libxenvchan_client_init (and
 * vchan-socket-proxy) talk to xenstore, whose socket for the domain exists
 * only then, before they open any device. Go programs join the same way
 * through vchan.SimHost. If the daemon is not running, the device calls
 * report it later.
 */
static struct simd_conn membership = {.ctl = -1, .ev = -1};

__attribute__((constructor)) static void join(void)
{
	const char *v = getenv("VCHAN_HOST");

	if (v && !strncmp(v, "sim:", 4) && simd_open(&membership, "joining the simulator") == 0) {
		close(membership.ev);
		membership.ev = -1;
	}
}

__attribute__((destructor)) static void leave(void)
{
	if (membership.ctl >= 0)
		simd_close(&membership);
}

xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger, unsigned int flags)
{
	xenevtchn_handle *h = calloc(1, sizeof(*h));

	(void)logger;
	(void)flags;
	if (!h)
		return NULL;
	if (simd_open(&h->c, "xenevtchn_open") < 0) {
		int e = errno;
		free(h);
		errno = e;
		return NULL;
	}
	return h;
}

int xenevtchn_close(xenevtchn_handle *xce)
{
	if (!xce)
		return 0;
	simd_close(&xce->c); /* the daemon unbinds the ports, as evtchn_release */
	free(xce);
	return 0;
}

int xenevtchn_fd(xenevtchn_handle *xce)
{
	return xce->c.ev;
}

static int port_call(xenevtchn_handle *xce, uint32_t op, uint32_t a, uint32_t b, size_t nargs)
{
	uint32_t req[3] = {op, a, b}, rep[1];
	size_t nrep = 0;

	if (simd_call(&xce->c, req, 1 + nargs, rep, 1, &nrep, NULL, NULL) < 0)
		return -1;
	return nrep ? (int)rep[0] : 0;
}

/*
 * One notify_async message, no reply to wait for (proto.go): a message on
 * the SEQPACKET control socket is atomic and has no reply, so it needs no
 * lock against a request in flight on another thread. A notify on a port
 * this handle has not bound is dropped by the daemon instead of failing;
 * libxenvchan ignores the result anyway.
 */
int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
	uint32_t req[2] = {SIMD_NOTIFY_ASYNC, port};
	ssize_t n;

	do
		n = send(xce->c.ctl, req, sizeof(req), MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(req) ? 0 : -1;
}

xenevtchn_port_or_error_t xenevtchn_bind_unbound_port(xenevtchn_handle *xce, uint32_t domid)
{
	return port_call(xce, SIMD_BIND_UNBOUND, domid, 0, 1);
}

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce, uint32_t domid,
						     evtchn_port_t remote_port)
{
	return port_call(xce, SIMD_BIND_INTERDOMAIN, domid, remote_port, 2);
}

int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
	return port_call(xce, SIMD_UNBIND, port, 0, 1) < 0 ? -1 : 0;
}

xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
	uint32_t port;
	ssize_t n;

	do
		n = read(xce->c.ev, &port, sizeof(port));
	while (n < 0 && errno == EINTR);
	if (n != sizeof(port)) {
		if (n >= 0)
			errno = ECONNRESET; /* EOF: the daemon is gone */
		return -1;
	}
	return (xenevtchn_port_or_error_t)port;
}

int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
	ssize_t n;

	do
		n = send(xce->c.ev, &port, sizeof(port), MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == sizeof(port) ? 0 : -1;
}
