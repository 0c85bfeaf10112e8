/*
 * libxenctrl.so.4.17, just enough for vchan-socket-proxy: in client mode it
 * opens a xenctrl handle and, when libxenvchan_client_init fails, asks
 * xc_domain_getinfo whether the server domain is gone. The simulator has
 * no hypervisor to ask, so the call fails with EPERM, as for an
 * unprivileged caller, and the proxy keeps waiting for the xenstore watch.
 * Exported under the symbol version VERS_4.17.0.
 */
#include <errno.h>
#include <stdlib.h>

#include <xenctrl.h>

struct xc_interface_core {
	int unused;
};

xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger,
				unsigned open_flags)
{
	(void)logger;
	(void)dombuild_logger;
	(void)open_flags;
	return calloc(1, sizeof(struct xc_interface_core));
}

int xc_interface_close(xc_interface *xch)
{
	free(xch);
	return 0;
}

int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid, unsigned int max_doms,
		      xc_dominfo_t *info)
{
	(void)xch;
	(void)first_domid;
	(void)max_doms;
	(void)info;
	errno = EPERM;
	return -1;
}
