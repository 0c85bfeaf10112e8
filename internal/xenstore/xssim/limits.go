package xssim

import "github.com/vchan-go/vchan/internal/xenstore"

// Limits are the per-domain quotas the store enforces on unprivileged
// domains (every domain but dom0), with C xenstored's defaults in
// DefaultLimits (docs/PROTOCOL.md §13.7). A limit of zero or less means no limit.
type Limits struct {
	Nodes        int // nodes owned per unprivileged domain (C xenstored: 1000)
	Watches      int // watches per unprivileged domain (128)
	Transactions int // open transactions per unprivileged connection (10)
	NodeSize     int // value bytes + perms size per node (2048); see NodeSize
	PermEntries  int // permission entries per node for unprivileged domains (5)
}

// DefaultLimits returns C xenstored's default quotas.
func DefaultLimits() Limits {
	return Limits{Nodes: 1000, Watches: 128, Transactions: 10, NodeSize: 2048, PermEntries: 5}
}

// permEntrySize is what one permission entry counts towards the node size
// quota: sizeof(struct xs_permissions) in C xenstored's node records.
const permEntrySize = 8

// NodeSize is the size a node with this value and these permissions counts
// against Limits.NodeSize: the value's length plus 8 bytes per permission
// entry, as C xenstored charges its permission records.
func NodeSize(value []byte, perms []xenstore.Perm) int {
	return len(value) + permEntrySize*len(perms)
}

// over reports whether n exceeds limit; a limit ≤ 0 is no limit.
func over(limit, n int) bool { return limit > 0 && n > limit }
