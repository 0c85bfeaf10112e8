/*
 * vchan-peer: a test peer linked against Xen's real libxenvchan.
 *
 *   vchan-peer -s|-c -d DOMID -p PATH [-r READ_MIN] [-w WRITE_MIN]
 *              [-m MODE] [-b CHUNK] [-x] [-t SECONDS]
 *
 * -s serves PATH to domain DOMID (libxenvchan_server_init with READ_MIN,
 * WRITE_MIN) and waits for the client; -c connects to the server DOMID
 * (libxenvchan_client_init, retried every 5 ms for up to -t seconds, 10 by
 * default). Status lines go to stderr, each starting "peer: ":
 *
 *   peer: connected left_order=L right_order=R   (read from the shared page)
 *   peer: is_open=N                              (each change, cat mode)
 *   peer: closed
 *
 * Modes:
 *   cat     (default) stdin -> vchan, vchan -> stdout, non-blocking, with
 *           select() on stdin and libxenvchan_fd_for_select. Runs until the
 *           peer closes and its data is drained; with -x, closes the vchan
 *           and exits as soon as stdin is at EOF and written out.
 *   sink    for each line "N" on stdin: read N bytes, then print "ok".
 *   source  for each line "N" on stdin: write N bytes in CHUNK-byte writes
 *           (default 65536), then print "ok".
 *   echo    write back whatever is read, until the peer closes.
 *   ping    for each line "N" on stdin: N times write 1 byte and read 1
 *           byte back, then print "ok".
 * sink, source, echo and ping set ctrl->blocking.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include <libxenvchan.h>

#define BUF (64 << 10)

static char buf[BUF], obuf[BUF];

static void status(const char *fmt, int a, int b)
{
	fprintf(stderr, "peer: ");
	fprintf(stderr, fmt, a, b);
	fprintf(stderr, "\n");
	fflush(stderr);
}

static void die(const char *what)
{
	fprintf(stderr, "peer: error: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			die("write stdout");
		}
		p += k;
		n -= (size_t)k;
	}
}

/* vread reads exactly n bytes (blocking mode). */
static void vread(struct libxenvchan *ctrl, char *p, size_t n)
{
	while (n > 0) {
		int k = libxenvchan_read(ctrl, p, n);
		if (k <= 0) {
			status("closed", 0, 0);
			exit(3);
		}
		p += k;
		n -= (size_t)k;
	}
}

static void vwrite(struct libxenvchan *ctrl, const char *p, size_t n)
{
	if (libxenvchan_write(ctrl, p, n) != (int)n) {
		status("closed", 0, 0);
		exit(3);
	}
}

static void cat(struct libxenvchan *ctrl, int exit_on_eof)
{
	int evfd = libxenvchan_fd_for_select(ctrl), eof = 0, last = -1;
	size_t inlen = 0, inoff = 0;

	ctrl->blocking = 0;
	fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
	for (;;) {
		fd_set rfds;
		int open, n;

		/* Write what stdin gave; the peer may be gone. */
		if (inoff < inlen) {
			n = libxenvchan_write(ctrl, buf + inoff, inlen - inoff);
			if (n < 0)
				inoff = inlen; /* peer closed: drop the rest */
			else
				inoff += (size_t)n;
		}
		/* Drain what the peer wrote. */
		while ((n = libxenvchan_read(ctrl, obuf, BUF)) > 0)
			write_all(1, obuf, (size_t)n);
		open = libxenvchan_is_open(ctrl);
		if (open != last) {
			status("is_open=%d", open, 0);
			last = open;
		}
		if (n < 0) { /* closed, and nothing left to read */
			libxenvchan_close(ctrl);
			status("closed", 0, 0);
			exit(0);
		}
		if (eof && inoff == inlen && exit_on_eof) {
			libxenvchan_close(ctrl);
			status("closed", 0, 0);
			exit(0);
		}
		FD_ZERO(&rfds);
		FD_SET(evfd, &rfds);
		if (!eof && inoff == inlen)
			FD_SET(0, &rfds);
		if (select(evfd + 1, &rfds, NULL, NULL, NULL) < 0) {
			if (errno == EINTR)
				continue;
			die("select");
		}
		if (FD_ISSET(evfd, &rfds) && libxenvchan_wait(ctrl) < 0)
			die("libxenvchan_wait");
		if (FD_ISSET(0, &rfds)) {
			ssize_t k = read(0, buf, BUF);
			if (k < 0 && errno != EAGAIN && errno != EINTR)
				die("read stdin");
			if (k == 0)
				eof = 1;
			if (k > 0) {
				inlen = (size_t)k;
				inoff = 0;
			}
		}
	}
}

/* commands runs the sink, source and ping modes: one "N" line at a time. */
static void commands(struct libxenvchan *ctrl, char mode, size_t chunk)
{
	char line[64];

	ctrl->blocking = 1;
	memset(buf, 'x', BUF);
	while (fgets(line, sizeof(line), stdin)) {
		long long n = atoll(line);
		for (long long i = 0; i < n;) {
			size_t k = (size_t)(n - i);
			switch (mode) {
			case 'k': /* sink */
				if (k > BUF)
					k = BUF;
				k = (size_t)libxenvchan_read(ctrl, obuf, k);
				if ((int)k <= 0) {
					status("closed", 0, 0);
					exit(3);
				}
				break;
			case 'o': /* source */
				if (k > chunk)
					k = chunk;
				vwrite(ctrl, buf, k);
				break;
			default: /* ping */
				k = 1;
				vwrite(ctrl, buf, 1);
				vread(ctrl, obuf, 1);
			}
			i += (long long)k;
		}
		printf("ok\n");
		fflush(stdout);
	}
	libxenvchan_close(ctrl);
	status("closed", 0, 0);
	exit(0);
}

static void echo(struct libxenvchan *ctrl)
{
	ctrl->blocking = 1;
	for (;;) {
		int n = libxenvchan_read(ctrl, buf, BUF);
		if (n <= 0 || libxenvchan_write(ctrl, buf, (size_t)n) != n)
			break;
	}
	libxenvchan_close(ctrl);
	status("closed", 0, 0);
	exit(0);
}

int main(int argc, char **argv)
{
	int server = -1, domid = -1, read_min = 0, write_min = 0, exit_on_eof = 0, timeout = 10, opt;
	const char *path = NULL, *mode = "cat";
	size_t chunk = BUF;
	struct libxenvchan *ctrl = NULL;

	while ((opt = getopt(argc, argv, "scd:p:r:w:m:b:xt:")) != -1) {
		switch (opt) {
		case 's': server = 1; break;
		case 'c': server = 0; break;
		case 'd': domid = atoi(optarg); break;
		case 'p': path = optarg; break;
		case 'r': read_min = atoi(optarg); break;
		case 'w': write_min = atoi(optarg); break;
		case 'm': mode = optarg; break;
		case 'b': chunk = (size_t)atoi(optarg); break;
		case 'x': exit_on_eof = 1; break;
		case 't': timeout = atoi(optarg); break;
		default: goto usage;
		}
	}
	if (server < 0 || domid < 0 || !path || chunk < 1 || chunk > BUF)
		goto usage;

	if (server) {
		ctrl = libxenvchan_server_init(NULL, domid, path, read_min, write_min);
		if (!ctrl)
			die("libxenvchan_server_init");
		ctrl->blocking = 1;
		/* cli_live is 2 until a client connects (PROTOCOL.md §3). */
		while (libxenvchan_is_open(ctrl) == 2)
			if (libxenvchan_wait(ctrl) < 0)
				die("libxenvchan_wait");
	} else {
		struct timespec ms5 = {0, 5000000};
		for (long i = 0; !ctrl; i++) {
			ctrl = libxenvchan_client_init(NULL, domid, path);
			if (!ctrl && i * 5 >= timeout * 1000L)
				die("libxenvchan_client_init");
			if (!ctrl)
				nanosleep(&ms5, NULL);
		}
	}
	status("connected left_order=%d right_order=%d", ctrl->ring->left_order, ctrl->ring->right_order);

	if (!strcmp(mode, "cat"))
		cat(ctrl, exit_on_eof);
	else if (!strcmp(mode, "sink"))
		commands(ctrl, 'k', chunk);
	else if (!strcmp(mode, "source"))
		commands(ctrl, 'o', chunk);
	else if (!strcmp(mode, "ping"))
		commands(ctrl, 'p', chunk);
	else if (!strcmp(mode, "echo"))
		echo(ctrl);
usage:
	fprintf(stderr, "usage: %s -s|-c -d DOMID -p PATH [-r READ_MIN] [-w WRITE_MIN] "
		"[-m cat|sink|source|echo|ping] [-b CHUNK] [-x] [-t SECONDS]\n", argv[0]);
	return 2;
}
