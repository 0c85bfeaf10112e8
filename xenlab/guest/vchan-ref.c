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
 *   vchan-ref -ping N server|client PEER-DOMID XENSTORE-PATH [RING-BYTES]
 *
 * measures the 1-byte round trip in libxenvchan's blocking mode: the client
 * sends one byte and waits for it to come back, N times, and prints
 * "rtt-ns <mean>" on stderr; the server echoes N bytes one at a time.
 *
 *   vchan-ref -close-after-write N send|recv server|client PEER-DOMID PATH-PREFIX [RING-BYTES]
 *
 * is the formal specification's "sender closes right after writing"
 * scenario, N connections one after another on PATH-PREFIX-0, -1, ...: the
 * sending side writes message i (scenario_message: sizes of one ring, two
 * rings, up to three rings and up to 100 bytes in turn, so that some fill the
 * ring exactly) and closes at once; the receiving side reads until the peer
 * has closed and the ring is drained, and compares. It prints "scenario ok
 * N" on stderr and exits 0, or names the first connection that lost or
 * changed a byte and exits 1. xenlab/vchanpeer has the same mode, with the
 * same messages.
 *
 *   vchan-ref -dd
 *
 * copies stdin to stdout in 64 KiB reads and writes, no vchan, and prints
 * "dd-ns <ns> <bytes>" on stderr, as vchanpeer -dd: what the system calls
 * of a receiver or a sender cost on the machine.
 *
 * Built in the dom0 root with: gcc -O2 -o vchan-ref vchan-ref.c -lxenvchan
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* stdin to stdout in 64 KiB reads and writes, timed (vchan-ref -dd). */
static int dd(void)
{
	static char buf[65536];
	long long start = now_ns(), n = 0;
	for (;;) {
		ssize_t r = read(0, buf, sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			perror("read");
			return 1;
		}
		if (r == 0)
			break;
		if (write_all(1, buf, (size_t)r) < 0) {
			perror("write");
			return 1;
		}
		n += r;
	}
	fprintf(stderr, "dd-ns %lld %lld\n", now_ns() - start, n);
	return 0;
}

/* memcpy of mib MiB in 16 KiB chunks between two 64 KiB buffers, as
 * vchanpeer -copy: MB/s. */
static int copy_speed(long mib)
{
	static char src[65536], dst[65536];
	long long total = (long long)mib << 20, n, t0;
	for (n = 0; n < (long long)sizeof src; n++)
		src[n] = (char)n;
	t0 = now_ns();
	for (n = 0; n < total; n += 16384) {
		size_t off = (size_t)(n % (long long)sizeof src);
		memcpy(dst + off, src + off, 16384);
		__asm__ volatile("" ::: "memory"); /* keep every copy */
	}
	fprintf(stderr, "copy-mbs %.1f\n", (double)total * 1000.0 / (double)(now_ns() - t0));
	return 0;
}

/* One byte each way, n times; the client times it. */
static int ping_pong(int argc, char **argv)
{
	struct libxenvchan *v;
	long n, i;
	int server;
	size_t ring = 4096;
	long long t0;
	unsigned char b;

	if (argc < 6 || argc > 7 || (strcmp(argv[3], "server") && strcmp(argv[3], "client"))) {
		fprintf(stderr, "usage: %s -ping N server|client PEER-DOMID PATH [RING-BYTES]\n", argv[0]);
		return 2;
	}
	n = atol(argv[2]);
	server = !strcmp(argv[3], "server");
	if (argc == 7)
		ring = (size_t)atol(argv[6]);
	if (server)
		v = libxenvchan_server_init(NULL, atoi(argv[4]), argv[5], ring, ring);
	else
		v = libxenvchan_client_init(NULL, atoi(argv[4]), argv[5]);
	if (!v) {
		perror(server ? "libxenvchan_server_init" : "libxenvchan_client_init");
		return 1;
	}
	v->blocking = 1;
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		if (!server) {
			b = (unsigned char)i;
			if (libxenvchan_write(v, &b, 1) != 1)
				goto closed;
		}
		if (libxenvchan_read(v, &b, 1) != 1)
			goto closed;
		if (server) {
			if (libxenvchan_write(v, &b, 1) != 1)
				goto closed;
		} else if (b != (unsigned char)i) {
			fprintf(stderr, "vchan-ref: round trip %ld: got byte %u back\n", i, b);
			return 1;
		}
	}
	if (!server)
		fprintf(stderr, "rtt-ns %lld\n", (now_ns() - t0) / n);
	/* (The client still reads the last byte after a close: its mapping stays.) */
	libxenvchan_close(v);
	return 0;
closed:
	fprintf(stderr, "vchan-ref: peer closed after %ld round trips\n", i);
	return 1;
}

/* scenario_message fills buf with message i of the scenario for a ring of
 * ring bytes and returns its length (at most 3 * ring): the same sequence
 * as xenlab/vchanpeer's scenarioMessage. */
static size_t scenario_message(unsigned i, size_t ring, unsigned char *buf)
{
	unsigned x = i * 2654435761u + 1u, k;
	size_t n;
#define NEXT() (x ^= x << 13, x ^= x >> 17, x ^= x << 5, x)
	switch (i % 4) {
	case 0: n = ring; break;
	case 1: n = 2 * ring; break;
	case 2: n = 1 + NEXT() % (3 * ring); break;
	default: n = 1 + NEXT() % 100; break;
	}
	for (k = 0; k < n; k++)
		buf[k] = (unsigned char)NEXT();
#undef NEXT
	return n;
}

static int close_after_write(int argc, char **argv)
{
	long n, i;
	int send, server, domid;
	size_t ring = 4096, len, got;
	unsigned char *want, *buf;
	char path[256];

	if (argc < 7 || argc > 8 || (strcmp(argv[3], "send") && strcmp(argv[3], "recv")) ||
	    (strcmp(argv[4], "server") && strcmp(argv[4], "client"))) {
		fprintf(stderr, "usage: %s -close-after-write N send|recv server|client PEER-DOMID PATH-PREFIX [RING-BYTES]\n", argv[0]);
		return 2;
	}
	n = atol(argv[2]);
	send = !strcmp(argv[3], "send");
	server = !strcmp(argv[4], "server");
	domid = atoi(argv[5]);
	if (argc == 8)
		ring = (size_t)atol(argv[7]);
	want = malloc(3 * ring);
	buf = malloc(3 * ring + 1);
	if (!want || !buf)
		return 1;
	for (i = 0; i < n; i++) {
		struct libxenvchan *v = NULL;
		int tries;

		snprintf(path, sizeof path, "%s-%ld", argv[6], i);
		len = scenario_message((unsigned)i, ring, want);
		if (server)
			v = libxenvchan_server_init(NULL, domid, path, ring, ring);
		else /* the server may not have published yet: retry for 30 s */
			for (tries = 0; !v && tries < 3000; tries++) {
				v = libxenvchan_client_init(NULL, domid, path);
				if (!v)
					usleep(10000);
			}
		if (!v) {
			fprintf(stderr, "vchan-ref: connection %ld: %s failed: %s\n", i,
				server ? "libxenvchan_server_init" : "libxenvchan_client_init", strerror(errno));
			return 1;
		}
		v->blocking = 1;
		if (send) {
			size_t off = 0;
			/* A server waits for its client (cli_live leaves 2) before it
			 * closes: closing first would revoke the grants the client
			 * has yet to map. */
			while (server && v->ring->cli_live == 2)
				if (libxenvchan_wait(v) < 0) {
					fprintf(stderr, "vchan-ref: connection %ld: no client\n", i);
					return 1;
				}
			while (off < len) {
				int w = libxenvchan_write(v, want + off, len - off);
				if (w <= 0) {
					fprintf(stderr, "vchan-ref: connection %ld: write failed after %zu of %zu bytes\n", i, off, len);
					return 1;
				}
				off += (size_t)w;
			}
			libxenvchan_close(v); /* right after the write */
			continue;
		}
		/* Receive until the peer has closed and the ring is drained. */
		got = 0;
		for (;;) {
			int ready = libxenvchan_data_ready(v);
			if (ready > 0) {
				int r = libxenvchan_read(v, buf + got, (size_t)ready < 3 * ring + 1 - got ? (size_t)ready : 3 * ring + 1 - got);
				if (r < 0)
					break;
				got += (size_t)r;
				if (got > 3 * ring)
					break;
				continue;
			}
			if (!libxenvchan_is_open(v) && libxenvchan_data_ready(v) == 0)
				break;
			if (libxenvchan_wait(v) < 0 && !libxenvchan_is_open(v) && libxenvchan_data_ready(v) == 0)
				break;
		}
		libxenvchan_close(v);
		if (got != len || memcmp(buf, want, len)) {
			fprintf(stderr, "vchan-ref: connection %ld: received %zu bytes, want %zu (equal prefix: %s)\n", i, got, len,
				got <= len && !memcmp(buf, want, got) ? "yes" : "no");
			return 1;
		}
	}
	fprintf(stderr, "scenario ok %ld\n", n);
	return 0;
}

int main(int argc, char **argv)
{
	struct libxenvchan *v;
	char in[65536], out[65536];
	size_t inlen = 0, inoff = 0;
	long long expect, got = 0, after = 0, reads = 0;
	struct timespec first = {0, 0}, last = {0, 0};
	int server, domid, stdin_open = 1;
	size_t ring = 4096;

	if (argc > 1 && !strcmp(argv[1], "-ping"))
		return ping_pong(argc, argv);
	if (argc > 1 && !strcmp(argv[1], "-close-after-write"))
		return close_after_write(argc, argv);
	if (argc == 2 && !strcmp(argv[1], "-dd"))
		return dd();
	if (argc == 3 && !strcmp(argv[1], "-copy"))
		return copy_speed(atol(argv[2]));
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
			/* The data phase, for the lab's throughput: as vchanpeer. */
			if (got == 0)
				clock_gettime(CLOCK_MONOTONIC, &first);
			else {
				after += n;
				reads++;
			}
			clock_gettime(CLOCK_MONOTONIC, &last);
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
			/* The peer may close as soon as it has everything it
			 * expects, before this side has seen EOF on stdin: done
			 * if stdin has nothing more. */
			if (expect >= 0 && got >= expect && inoff == inlen && stdin_open) {
				fcntl(0, F_SETFL, fcntl(0, F_GETFL) & ~O_NONBLOCK);
				if (read(0, in, 1) == 0)
					break;
			}
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
	if (after > 0)
		fprintf(stderr, "recv %lld:%lld:%lld\n",
			(long long)(last.tv_sec - first.tv_sec) * 1000000000LL + (last.tv_nsec - first.tv_nsec), after, reads);
	libxenvchan_close(v);
	return 0;
}
