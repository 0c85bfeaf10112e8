// Package xendev is the Linux plumbing shared by the Xen device packages,
// gnt (/dev/xen/gntalloc, /dev/xen/gntdev) and evtchn (/dev/xen/evtchn):
// ioctl request numbers, the ioctl call, and opening a device with an
// explanation of what is missing when it fails. The devices exist only on
// Linux; on other systems the package is empty.
package xendev
