/*
 * vchan-ref: the reference peer for the lab, on Xen's own libxenvchan.
 *
 *   vchan-ref server|client PEER-DOMID XENSTORE-PATH EXPECT-BYTES [RING-BYTES]
 *
 * Sends its stdin over the vchan and writes what it receives to stdout. It
 * exits 0 once stdin is at EOF, all of it was sent, and EXPECT-BYTES were
 * received; 1 if the peer closed before that. A server asks for RING-BYTES
 * (default 4096) each way, as libxenvchan_server_init's minimum sizes.
 * With EXPECT-BYTES -1 it reads until the peer closes.
 *
 * Built in the dom0 root with: gcc -O2 -o vchan-ref vchan-ref.c -lxenvchan
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libxenvchan.h>

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct libxenvchan *v;
	char in[65536], out[65536];
	size_t inlen = 0, inoff = 0;
	long long expect, got = 0;
	int server, domid, stdin_open = 1;
	size_t ring = 4096;

	if (argc < 5 || argc > 6 ||
	    (strcmp(argv[1], "server") && strcmp(argv[1], "client"))) {
		fprintf(stderr, "usage: %s server|client PEER-DOMID PATH EXPECT-BYTES [RING-BYTES]\n", argv[0]);
		return 2;
	}
	server = !strcmp(argv[1], "server");
	domid = atoi(argv[2]);
	expect = atoll(argv[4]);
	if (argc == 6)
		ring = (size_t)atol(argv[5]);

	if (server)
		v = libxenvchan_server_init(NULL, domid, argv[3], ring, ring);
	else
		v = libxenvchan_client_init(NULL, domid, argv[3]);
	if (!v) {
		perror(server ? "libxenvchan_server_init" : "libxenvchan_client_init");
		return 1;
	}
	v->blocking = 0;
	fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);

	for (;;) {
		int progress = 0, open;

		/* Drain everything the peer has written. */
		for (;;) {
			int n = libxenvchan_read(v, out, sizeof out);
			if (n < 0) {
				break;
			}
			if (n == 0)
				break;
			if (write_all(1, out, (size_t)n) < 0) {
				perror("write stdout");
				return 1;
			}
			got += n;
			progress = 1;
		}
		/* Refill from stdin and push as much as fits. */
		if (stdin_open && inoff == inlen) {
			ssize_t r = read(0, in, sizeof in);
			if (r == 0) {
				stdin_open = 0;
			} else if (r > 0) {
				inlen = (size_t)r;
				inoff = 0;
				progress = 1;
			} else if (errno != EAGAIN && errno != EINTR) {
				perror("read stdin");
				return 1;
			}
		}
		if (inoff < inlen) {
			int n = libxenvchan_write(v, in + inoff, inlen - inoff);
			if (n < 0) {
				fprintf(stderr, "vchan-ref: write failed: peer closed\n");
				return 1;
			}
			if (n > 0) {
				inoff += (size_t)n;
				progress = 1;
			}
		}
		if (!stdin_open && inoff == inlen && expect >= 0 && got >= expect)
			break;
		open = libxenvchan_is_open(v);
		if (open == 0 && libxenvchan_data_ready(v) == 0) {
			if (expect < 0 && !stdin_open && inoff == inlen)
				break;
			fprintf(stderr, "vchan-ref: peer closed after %lld of %lld bytes\n", got, expect);
			libxenvchan_close(v);
			return 1;
		}
		if (progress)
			continue;

		{
			struct pollfd p[2];
			int np = 1;
			p[0].fd = libxenvchan_fd_for_select(v);
			p[0].events = POLLIN;
			if (stdin_open && inoff == inlen) {
				p[1].fd = 0;
				p[1].events = POLLIN;
				np = 2;
			}
			if (poll(p, np, 1000) < 0 && errno != EINTR) {
				perror("poll");
				return 1;
			}
			if (p[0].revents & POLLIN)
				libxenvchan_wait(v); /* consumes the event and unmasks it */
		}
	}
	libxenvchan_close(v);
	return 0;
}
