/*
 * libxenevtchn.so.1 over vchan-simd: the event channel functions
 * libxenvchan calls, with the semantics of Xen 4.17's
 * tools/libs/evtchn/linux.c (PROTOCOL.md §12). Exported under the symbol
 * version VERS_1.0.
 *
 * Every port bound through a handle comes with two bells from the daemon,
 * eventfds passed with the bind reply (proto.go): a nonzero count on "in"
 * is the port's pending event, and reading it consumes the event and
 * unmasks the port at once; writing 1 to "out" raises an event on the
 * remote end, without a round trip to the daemon. A handle gathers its
 * ports' "in" bells in one epoll set, which is what xenevtchn_fd returns
 * (pollable like /dev/xen/evtchn) and what xenevtchn_pending blocks on.
 * The set holds the event socket from hello too: the daemon never writes
 * on it, so its hang-up means the daemon is gone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <xenevtchn.h>

#include "simd.h"

/* The epoll data of the event socket; a bell's is its port (a uint32). */
#define EV_SOCKET ((uint64_t)1 << 32)

struct bells {
	evtchn_port_t port;
	int in, out;
};

struct xenevtchn_handle {
	struct simd_conn c;
	int ep; /* the epoll set: the event socket and every port's in bell */
	/*
	 * Guards the port table, and a bell while it is used, so that an
	 * unbind on another thread cannot close it (and its number be
	 * reused) under a notify or a pending.
	 */
	pthread_mutex_t mu;
	struct bells *ports;
	size_t nports, cap;
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
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = EV_SOCKET};
	int e;

	(void)logger;
	(void)flags;
	if (!h)
		return NULL;
	if (simd_open(&h->c, "xenevtchn_open") < 0) {
		e = errno;
		free(h);
		errno = e;
		return NULL;
	}
	h->ep = epoll_create1(EPOLL_CLOEXEC);
	if (h->ep < 0 || epoll_ctl(h->ep, EPOLL_CTL_ADD, h->c.ev, &ev) < 0) {
		e = errno;
		if (h->ep >= 0)
			close(h->ep);
		simd_close(&h->c);
		free(h);
		errno = e;
		return NULL;
	}
	pthread_mutex_init(&h->mu, NULL);
	return h;
}

int xenevtchn_close(xenevtchn_handle *xce)
{
	if (!xce)
		return 0;
	for (size_t i = 0; i < xce->nports; i++) {
		close(xce->ports[i].in);
		close(xce->ports[i].out);
	}
	free(xce->ports);
	close(xce->ep);
	simd_close(&xce->c); /* the daemon unbinds the ports, as evtchn_release */
	pthread_mutex_destroy(&xce->mu);
	free(xce);
	return 0;
}

int xenevtchn_fd(xenevtchn_handle *xce)
{
	return xce->ep;
}

/* find returns the port's entry in the table, or NULL; the caller holds mu. */
static struct bells *find(xenevtchn_handle *xce, evtchn_port_t port)
{
	for (size_t i = 0; i < xce->nports; i++)
		if (xce->ports[i].port == port)
			return &xce->ports[i];
	return NULL;
}

/*
 * lock_port takes mu and returns the port's entry; for a port this handle
 * has not bound it returns NULL, with mu released and errno EINVAL.
 */
static struct bells *lock_port(xenevtchn_handle *xce, evtchn_port_t port)
{
	struct bells *b;

	pthread_mutex_lock(&xce->mu);
	b = find(xce, port);
	if (!b) {
		pthread_mutex_unlock(&xce->mu);
		errno = EINVAL;
	}
	return b;
}

/* add enters a freshly bound port and its bells into the table and the set. */
static int add(xenevtchn_handle *xce, evtchn_port_t port, int in, int out)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = port};
	int ret = -1;

	pthread_mutex_lock(&xce->mu);
	if (xce->nports == xce->cap) {
		size_t cap = xce->cap ? 2 * xce->cap : 4;
		struct bells *p = realloc(xce->ports, cap * sizeof(*p));

		if (!p)
			goto out;
		xce->ports = p;
		xce->cap = cap;
	}
	if (epoll_ctl(xce->ep, EPOLL_CTL_ADD, in, &ev) < 0)
		goto out;
	xce->ports[xce->nports++] = (struct bells){.port = port, .in = in, .out = out};
	ret = 0;
out:
	pthread_mutex_unlock(&xce->mu);
	return ret;
}

static int unbind_call(xenevtchn_handle *xce, evtchn_port_t port)
{
	uint32_t req[2] = {SIMD_UNBIND, port}, rep[1];
	size_t nrep = 0;

	return simd_call(&xce->c, req, 2, rep, 1, &nrep, NULL, NULL);
}

/* bind_port sends a bind request (nreq words) and takes the port's bells. */
static xenevtchn_port_or_error_t bind_port(xenevtchn_handle *xce, const uint32_t *req, size_t nreq)
{
	uint32_t rep[1];
	size_t nrep = 0;
	int fds[SIMD_MAX_FDS], nfds = 0, e;

	if (simd_call(&xce->c, req, nreq, rep, 1, &nrep, fds, &nfds) < 0)
		return -1;
	if (nrep != 1 || nfds != 2) {
		/* Without its bells the port is of no use: give it back. */
		if (nrep == 1)
			(void)unbind_call(xce, rep[0]);
		simd_closefds(fds, nfds);
		errno = EPROTO;
		return -1;
	}
	if (add(xce, rep[0], fds[0], fds[1]) < 0) {
		e = errno;
		(void)unbind_call(xce, rep[0]);
		simd_closefds(fds, nfds);
		errno = e;
		return -1;
	}
	return (xenevtchn_port_or_error_t)rep[0];
}

xenevtchn_port_or_error_t xenevtchn_bind_unbound_port(xenevtchn_handle *xce, uint32_t domid)
{
	uint32_t req[2] = {SIMD_BIND_UNBOUND, domid};

	return bind_port(xce, req, 2);
}

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce, uint32_t domid,
						     evtchn_port_t remote_port)
{
	uint32_t req[3] = {SIMD_BIND_INTERDOMAIN, domid, remote_port};

	return bind_port(xce, req, 3);
}

/*
 * As evtchn_unbind: a port this handle has not bound fails with EINVAL;
 * one it has is gone from it even if the daemon cannot be told (then the
 * connection is dead, and the daemon unbinds it anyway).
 */
int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
	struct bells *b, gone;
	int ret, e;

	b = lock_port(xce, port);
	if (!b)
		return -1;
	gone = *b;
	*b = xce->ports[--xce->nports];
	(void)epoll_ctl(xce->ep, EPOLL_CTL_DEL, gone.in, NULL);
	pthread_mutex_unlock(&xce->mu);
	ret = unbind_call(xce, port);
	e = errno;
	close(gone.in);
	close(gone.out);
	errno = e;
	return ret < 0 ? -1 : 0;
}

/*
 * One write to the port's out bell, no round trip to the daemon. EAGAIN
 * means the count is saturated: an event is pending there already.
 */
int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
	static const uint64_t one = 1;
	struct bells *b;
	ssize_t n;
	int ret = 0;

	b = lock_port(xce, port);
	if (!b)
		return -1;
	do
		n = write(b->out, &one, sizeof(one));
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno != EAGAIN)
		ret = -1;
	pthread_mutex_unlock(&xce->mu);
	return ret;
}

/*
 * The daemon never writes on the event socket: readiness there is its
 * hang-up (anything it did send would be stale, and is dropped). Returns
 * -1 with errno ECONNRESET once the daemon is gone, 0 otherwise.
 */
static int check_daemon(xenevtchn_handle *xce, uint32_t events)
{
	char buf[64];
	ssize_t n;

	if (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) {
		errno = ECONNRESET;
		return -1;
	}
	do
		n = recv(xce->c.ev, buf, sizeof(buf), MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n == 0 || (n < 0 && errno != EAGAIN)) {
		errno = ECONNRESET;
		return -1;
	}
	return 0;
}

/*
 * Blocks, as a read of the blocking /dev/xen/evtchn does (libxenvchan_wait
 * relies on it), until a bound port has an event; consumes it, which
 * unmasks the port too, and returns the port.
 */
xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
	for (;;) {
		struct epoll_event ev;
		struct bells *b;
		evtchn_port_t port;
		uint64_t count;
		ssize_t n;
		int n_ev;

		n_ev = epoll_wait(xce->ep, &ev, 1, -1);
		if (n_ev < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n_ev == 0)
			continue;
		if (ev.data.u64 == EV_SOCKET) {
			if (check_daemon(xce, ev.events) < 0)
				return -1;
			continue;
		}
		port = (evtchn_port_t)ev.data.u64;
		pthread_mutex_lock(&xce->mu);
		b = find(xce, port);
		if (!b) {
			/* Unbound by another thread since epoll_wait. */
			pthread_mutex_unlock(&xce->mu);
			continue;
		}
		do
			n = read(b->in, &count, sizeof(count));
		while (n < 0 && errno == EINTR);
		pthread_mutex_unlock(&xce->mu);
		if (n == (ssize_t)sizeof(count))
			return (xenevtchn_port_or_error_t)port;
		if (n < 0 && errno != EAGAIN)
			return -1;
		/* EAGAIN: another reader took the event first; a spurious wake-up. */
	}
}

/* Reading the in bell in xenevtchn_pending has unmasked the port already. */
int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
	(void)xce;
	(void)port;
	return 0;
}
