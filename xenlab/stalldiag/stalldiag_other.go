//go:build !linux

package stalldiag

// EventChannels says that there are none to describe: Xen's event-channel
// device is Linux's.
func EventChannels() string { return "no event-channel device on this system" }
