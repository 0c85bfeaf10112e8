/*
 * The vchan-simd control protocol, client side (see simd.h). Every field is
 * a native-endian uint32; every message keeps its boundaries
 * (SOCK_SEQPACKET) and may carry descriptors (SCM_RIGHTS).
 */
#define _GNU_SOURCE
#include "simd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define PROTO_VERSION 3

/* Reply status codes (proto.go). */
enum {
	ST_OK,
	ST_INVAL,
	ST_NOSPACE,
	ST_BADREF,
	ST_NOTBINDABLE,
	ST_CLOSED,
	ST_FAILED,
};

/* The errno a device of the real kernel would fail with. */
static int status_errno(uint32_t st)
{
	switch (st) {
	case ST_INVAL:
	case ST_BADREF:
	case ST_NOTBINDABLE:
		return EINVAL;
	case ST_NOSPACE:
		return ENOSPC;
	case ST_CLOSED:
		return ENOTCONN;
	default:
		return EIO;
	}
}

static int sim_domid(const char *what, uint16_t *domid)
{
	const char *v = getenv("VCHAN_HOST");
	char *end;
	unsigned long n;

	if (!v || strncmp(v, "sim:", 4) != 0 || !v[4])
		goto bad;
	errno = 0;
	n = strtoul(v + 4, &end, 10);
	if (errno || *end || n > 0xffff || v[4] < '0' || v[4] > '9')
		goto bad;
	*domid = (uint16_t)n;
	return 0;
bad:
	fprintf(stderr, "vchan-sim shim (%s): VCHAN_HOST=%s: want sim:<domid>\n",
		what, v ? v : "(unset)");
	errno = EINVAL;
	return -1;
}

static int sim_control_path(char *buf, size_t size)
{
	const char *d = getenv("VCHAN_SIM_DIR");
	int n;

	if (d && *d)
		n = snprintf(buf, size, "%s/control", d);
	else if ((d = getenv("XDG_RUNTIME_DIR")) && *d)
		n = snprintf(buf, size, "%s/vchan-sim/control", d);
	else
		n = snprintf(buf, size, "/tmp/vchan-sim-%u/control", (unsigned)getuid());
	if (n < 0 || (size_t)n >= size) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

void simd_closefds(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* exchange sends a request and receives its reply; the caller holds c->mu. */
static ssize_t exchange(struct simd_conn *c, const uint32_t *req, size_t nreq,
			void *buf, size_t size, int *fds, int *nfds)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(SIMD_MAX_FDS * sizeof(int))];
	} ctl;
	struct iovec iov;
	struct msghdr mh;
	struct cmsghdr *cm;
	ssize_t n;

	*nfds = 0;
	do
		n = send(c->ctl, req, nreq * 4, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;

	memset(&mh, 0, sizeof(mh));
	iov.iov_base = buf;
	iov.iov_len = size;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl.buf;
	mh.msg_controllen = sizeof(ctl.buf);
	do
		n = recvmsg(c->ctl, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			if (*nfds + k > SIMD_MAX_FDS)
				k = SIMD_MAX_FDS - *nfds;
			memcpy(fds + *nfds, CMSG_DATA(cm), k * sizeof(int));
			*nfds += k;
		}
	}
	if (n == 0) {
		/* The daemon never sends an empty reply: it is gone. */
		errno = ECONNRESET;
		goto bad;
	}
	if (n < 4 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		errno = EPROTO;
		goto bad;
	}
	return n;
bad:
	simd_closefds(fds, *nfds);
	*nfds = 0;
	return -1;
}

int simd_call(struct simd_conn *c, const uint32_t *req, size_t nreq,
	      uint32_t *rep, size_t maxrep, size_t *nrep, int *fds, int *nfds)
{
	static const char *names[] = {"?", "hello", "share", "map", "unmap",
				      "bind_unbound", "bind_interdomain",
				      "notify", "unbind"};
	const char *name = req[0] < sizeof(names) / sizeof(names[0]) ? names[req[0]] : "?";
	int myfds[SIMD_MAX_FDS], n_fds = 0;
	uint32_t *buf;
	uint32_t st;
	ssize_t n;

	buf = malloc(SIMD_MAX_MSG);
	if (!buf)
		return -1;
	pthread_mutex_lock(&c->mu);
	n = exchange(c, req, nreq, buf, SIMD_MAX_MSG, myfds, &n_fds);
	pthread_mutex_unlock(&c->mu);
	if (n < 0) {
		int e = errno;
		fprintf(stderr, "vchan-sim shim: %s (domain %u): connection to vchan-simd: %s\n",
			name, c->domid, strerror(e));
		free(buf);
		errno = e;
		return -1;
	}
	st = buf[0];
	if (st != ST_OK) {
		simd_closefds(myfds, n_fds);
		fprintf(stderr, "vchan-sim shim: %s (domain %u): %.*s\n", name, c->domid,
			(int)(n - 4), (char *)(buf + 1));
		free(buf);
		errno = status_errno(st);
		return -1;
	}
	*nrep = (size_t)(n - 4) / 4;
	if (*nrep > maxrep)
		*nrep = maxrep;
	memcpy(rep, buf + 1, *nrep * 4);
	free(buf);
	if (fds) {
		memcpy(fds, myfds, n_fds * sizeof(int));
		*nfds = n_fds;
	} else {
		simd_closefds(myfds, n_fds);
	}
	return 0;
}

int simd_open(struct simd_conn *c, const char *what)
{
	struct sockaddr_un sa;
	uint32_t req[3], rep[1];
	size_t nrep;
	int fds[SIMD_MAX_FDS], nfds = 0;

	memset(c, 0, sizeof(*c));
	c->ctl = c->ev = -1;
	if (sim_domid(what, &c->domid) < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (sim_control_path(sa.sun_path, sizeof(sa.sun_path)) < 0) {
		fprintf(stderr, "vchan-sim shim (%s): simulator directory: %s\n", what, strerror(errno));
		return -1;
	}
	c->ctl = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (c->ctl < 0)
		return -1;
	if (connect(c->ctl, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		fprintf(stderr, "vchan-sim shim (%s): %s: %s (is vchan-simd running? set VCHAN_SIM_DIR)\n",
			what, sa.sun_path, strerror(e));
		close(c->ctl);
		c->ctl = -1;
		errno = e;
		return -1;
	}
	pthread_mutex_init(&c->mu, NULL);
	req[0] = SIMD_HELLO;
	req[1] = PROTO_VERSION;
	req[2] = c->domid;
	if (simd_call(c, req, 3, rep, 1, &nrep, fds, &nfds) < 0)
		goto fail;
	if (nrep != 1 || rep[0] != PROTO_VERSION || nfds != 1) {
		fprintf(stderr, "vchan-sim shim (%s): bad hello reply (version %u, %d descriptors)\n",
			what, nrep ? rep[0] : 0, nfds);
		simd_closefds(fds, nfds);
		errno = EPROTO;
		goto fail;
	}
	c->ev = fds[0];
	return 0;
fail:
	{
		int e = errno;
		close(c->ctl);
		c->ctl = -1;
		pthread_mutex_destroy(&c->mu);
		errno = e;
	}
	return -1;
}

void simd_close(struct simd_conn *c)
{
	if (c->ctl >= 0)
		close(c->ctl);
	if (c->ev >= 0)
		close(c->ev);
	c->ctl = c->ev = -1;
	pthread_mutex_destroy(&c->mu);
}
