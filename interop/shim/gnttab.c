/*
 * libxengnttab.so.1 over vchan-simd: the grant-mapping (xengnttab_*, gntdev)
 * and grant-sharing (xengntshr_*, gntalloc) functions libxenvchan calls,
 * with the semantics of Xen 4.17's tools/libs/gnttab/linux.c (PROTOCOL.md
 * §5, §10, §11). Exported under the symbol version VERS_1.0, which the
 * Debian binaries ask for.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xengnttab.h>

#include "simd.h"

#define PAGE 4096u

/* A mapping made through the daemon, found again by its address. */
struct region {
	struct region *next;
	void *addr;
	size_t pages;
	uint32_t id;
};

struct xengntdev_handle {
	struct simd_conn c;
	pthread_mutex_t mu; /* guards regions */
	struct region *regions;
};

static struct xengntdev_handle *handle_open(const char *what)
{
	struct xengntdev_handle *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	if (simd_open(&h->c, what) < 0) {
		int e = errno;
		free(h);
		errno = e;
		return NULL;
	}
	/* A grant handle binds no ports: it has no use for the event socket. */
	close(h->c.ev);
	h->c.ev = -1;
	pthread_mutex_init(&h->mu, NULL);
	return h;
}

/*
 * handle_close closes the connection; the daemon then unmaps what is left,
 * as the kernel does when the device file is released. Memory still mapped
 * here stays mapped (libxenvchan_close munmaps the data rings itself).
 */
static int handle_close(struct xengntdev_handle *h)
{
	struct region *r, *next;

	if (!h)
		return 0;
	simd_close(&h->c);
	for (r = h->regions; r; r = next) {
		next = r->next;
		free(r);
	}
	pthread_mutex_destroy(&h->mu);
	free(h);
	return 0;
}

static int add_region(struct xengntdev_handle *h, void *addr, size_t pages, uint32_t id)
{
	struct region *r = malloc(sizeof(*r));

	if (!r)
		return -1;
	r->addr = addr;
	r->pages = pages;
	r->id = id;
	pthread_mutex_lock(&h->mu);
	r->next = h->regions;
	h->regions = r;
	pthread_mutex_unlock(&h->mu);
	return 0;
}

static void tell_unmap(struct xengntdev_handle *h, uint32_t id)
{
	uint32_t req[2] = {SIMD_UNMAP, id}, rep[1];
	size_t nrep;

	(void)simd_call(&h->c, req, 2, rep, 1, &nrep, NULL, NULL);
}

/* unmap_region munmaps the region at addr and tells the daemon. */
static int unmap_region(struct xengntdev_handle *h, void *addr, uint32_t count)
{
	struct region **p, *r = NULL;
	uint32_t req[2], rep[1];
	size_t nrep;
	int ret;

	pthread_mutex_lock(&h->mu);
	for (p = &h->regions; *p; p = &(*p)->next) {
		if ((*p)->addr == addr) {
			r = *p;
			*p = r->next;
			break;
		}
	}
	pthread_mutex_unlock(&h->mu);
	if (!r) {
		errno = EINVAL;
		return -1;
	}
	if (count != r->pages)
		fprintf(stderr, "vchan-sim shim: unmap of %u pages at %p: the mapping has %zu\n",
			count, addr, r->pages);
	munmap(r->addr, r->pages * PAGE);
	req[0] = SIMD_UNMAP;
	req[1] = r->id;
	ret = simd_call(&h->c, req, 2, rep, 1, &nrep, NULL, NULL);
	free(r);
	return ret;
}

/* The unmap notification libxengnttab asks the kernel for. */
static void notify_words(uint32_t offset, evtchn_port_t port, uint32_t *w)
{
	w[0] = w[1] = w[2] = 0;
	if (offset < PAGE) {
		w[0] |= SIMD_NOTIFY_CLEAR_BYTE;
		w[1] = offset;
	}
	if (port != (evtchn_port_t)-1) {
		w[0] |= SIMD_NOTIFY_SEND_EVENT;
		w[2] = port;
	}
}

/* ---- gntdev ---- */

xengnttab_handle *xengnttab_open(struct xentoollog_logger *logger, unsigned open_flags)
{
	(void)logger;
	(void)open_flags;
	return handle_open("xengnttab_open");
}

int xengnttab_close(xengnttab_handle *xgt)
{
	return handle_close(xgt);
}

static void *map_refs(xengnttab_handle *xgt, uint32_t count, uint32_t domid,
		      const uint32_t *refs, int prot, const uint32_t notify[3])
{
	uint32_t *req, *rep;
	size_t nrep, size = (size_t)count * PAGE, at = 0;
	int fds[SIMD_MAX_FDS], nfds = 0, writable = (prot & PROT_WRITE) != 0;
	void *base = MAP_FAILED;
	uint32_t id = 0;

	if (count < 1 || count > (SIMD_MAX_MSG / 4 - 6)) {
		errno = EINVAL;
		return NULL;
	}
	req = malloc((6 + (size_t)count) * 4);
	rep = malloc(SIMD_MAX_MSG);
	if (!req || !rep)
		goto out;
	req[0] = SIMD_MAP;
	req[1] = domid;
	req[2] = writable;
	memcpy(req + 3, notify, 3 * 4);
	memcpy(req + 6, refs, (size_t)count * 4);
	if (simd_call(&xgt->c, req, 6 + count, rep, SIMD_MAX_MSG / 4, &nrep, fds, &nfds) < 0)
		goto out;
	if (nrep < 2 || nrep < 2 + 3 * (size_t)rep[1])
		goto bad;
	id = rep[0];
	base = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		goto fail;
	for (uint32_t i = 0; i < rep[1]; i++) {
		uint32_t fi = rep[2 + 3 * i], first = rep[3 + 3 * i], n = rep[4 + 3 * i];
		if ((int)fi >= nfds || n < 1 || at + n > count)
			goto bad;
		if (mmap((char *)base + at * PAGE, (size_t)n * PAGE, writable ? PROT_READ | PROT_WRITE : PROT_READ,
			 MAP_SHARED | MAP_FIXED, fds[fi], (off_t)first * PAGE) == MAP_FAILED)
			goto fail;
		at += n;
	}
	if (at != count)
		goto bad;
	if (add_region(xgt, base, count, id) < 0)
		goto fail;
	simd_closefds(fds, nfds);
	free(req);
	free(rep);
	return base;
bad:
	fprintf(stderr, "vchan-sim shim: map: bad reply from vchan-simd\n");
	errno = EPROTO;
fail:
	{
		int e = errno;
		if (base != MAP_FAILED)
			munmap(base, size);
		tell_unmap(xgt, id);
		simd_closefds(fds, nfds);
		errno = e;
	}
out:
	{
		int e = errno;
		free(req);
		free(rep);
		errno = e;
	}
	return NULL;
}

void *xengnttab_map_domain_grant_refs(xengnttab_handle *xgt, uint32_t count, uint32_t domid,
				      uint32_t *refs, int prot)
{
	static const uint32_t none[3];

	return map_refs(xgt, count, domid, refs, prot, none);
}

void *xengnttab_map_grant_ref_notify(xengnttab_handle *xgt, uint32_t domid, uint32_t ref,
				     int prot, uint32_t notify_offset, evtchn_port_t notify_port)
{
	uint32_t notify[3];

	notify_words(notify_offset, notify_port, notify);
	return map_refs(xgt, 1, domid, &ref, prot, notify);
}

int xengnttab_unmap(xengnttab_handle *xgt, void *start_address, uint32_t count)
{
	return unmap_region(xgt, start_address, count);
}

/* ---- gntalloc ---- */

xengntshr_handle *xengntshr_open(struct xentoollog_logger *logger, unsigned open_flags)
{
	(void)logger;
	(void)open_flags;
	return handle_open("xengntshr_open");
}

int xengntshr_close(xengntshr_handle *xgs)
{
	return handle_close(xgs);
}

static void *share(xengntshr_handle *xgs, uint32_t domid, int count, uint32_t *refs,
		   const uint32_t notify[3])
{
	uint32_t req[6], *rep;
	size_t nrep;
	int fds[SIMD_MAX_FDS], nfds = 0;
	void *base;

	if (count < 1 || count > 4096) {
		errno = EINVAL;
		return NULL;
	}
	rep = malloc((1 + (size_t)count) * 4);
	if (!rep)
		return NULL;
	req[0] = SIMD_SHARE;
	req[1] = domid;
	req[2] = (uint32_t)count;
	memcpy(req + 3, notify, 3 * 4);
	if (simd_call(&xgs->c, req, 6, rep, 1 + (size_t)count, &nrep, fds, &nfds) < 0) {
		free(rep);
		return NULL;
	}
	if (nrep != 1 + (size_t)count || nfds != 1) {
		fprintf(stderr, "vchan-sim shim: share: bad reply from vchan-simd\n");
		simd_closefds(fds, nfds);
		tell_unmap(xgs, nrep ? rep[0] : 0);
		free(rep);
		errno = EPROTO;
		return NULL;
	}
	base = mmap(NULL, (size_t)count * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	close(fds[0]);
	if (base == MAP_FAILED || add_region(xgs, base, (size_t)count, rep[0]) < 0) {
		int e = errno;
		if (base != MAP_FAILED)
			munmap(base, (size_t)count * PAGE);
		tell_unmap(xgs, rep[0]);
		free(rep);
		errno = e;
		return NULL;
	}
	memcpy(refs, rep + 1, (size_t)count * 4);
	free(rep);
	return base;
}

void *xengntshr_share_pages(xengntshr_handle *xgs, uint32_t domid, int count, uint32_t *refs,
			    int writable)
{
	static const uint32_t none[3];

	/* The simulator grants every page writable; so does libxenvchan. */
	(void)writable;
	return share(xgs, domid, count, refs, none);
}

void *xengntshr_share_page_notify(xengntshr_handle *xgs, uint32_t domid, uint32_t *ref,
				  int writable, uint32_t notify_offset, evtchn_port_t notify_port)
{
	uint32_t notify[3];

	(void)writable;
	notify_words(notify_offset, notify_port, notify);
	return share(xgs, domid, 1, ref, notify);
}

int xengntshr_unshare(xengntshr_handle *xgs, void *start_address, uint32_t count)
{
	return unmap_region(xgs, start_address, count);
}
