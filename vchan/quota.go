package vchan

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/xenstore"
)

// Xenstore daemons limit what one unprivileged domain may hold (docs/PROTOCOL.md
// §13.7). Qubes users hit both quotas below with vchan (issues 5343, 11059);
// the raw errno ("argument list too long", "no space left on device") does
// not tell them which limit, or how to raise it.

// isXenstoreQuota reports a xenstore error that a retry will not cure.
// C xenstored says E2BIG (watches) or ENOSPC (transactions, nodes);
// oxenstored says EQUOTA for all of them, which xswire reads as EDQUOT.
func isXenstoreQuota(err error) bool {
	return errors.Is(err, syscall.E2BIG) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// explainXenstore names the xenstore quota behind err, if any.
func explainXenstore(err error) error {
	var xe *xenstore.Error
	if !errors.As(err, &xe) {
		return err
	}
	switch {
	case xe.Op == "watch" && (errors.Is(err, syscall.E2BIG) || errors.Is(err, syscall.EDQUOT)):
		return fmt.Errorf("xenstore watch quota reached: this domain holds too many watches "+
			"(each waiting Dial holds one; C xenstored allows 128 per domain, raised with its -W/--watch-nb option; "+
			"oxenstored: quota-maxwatch in oxenstored.conf): %w", err)
	case xe.Op == "transaction_start" && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)):
		return fmt.Errorf("xenstore transaction quota reached: this domain has too many open transactions "+
			"(C xenstored allows 10, raised with its -t/--transaction option; "+
			"oxenstored: quota-transaction in oxenstored.conf): %w", err)
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("xenstore quota reached (nodes per domain or node size): %w", err)
	case errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("xenstore quota reached (oxenstored: see the quota-* settings in oxenstored.conf): %w", err)
	}
	return err
}

// isShortage reports a failure to publish a ring that clears when other
// connections close: the grant limit, a xenstore quota on nodes or
// transactions, EAGAIN.
func isShortage(err error) bool {
	return errors.Is(err, gnt.ErrNoSpace) || errors.Is(err, syscall.ENOSPC) ||
		errors.Is(err, syscall.E2BIG) || errors.Is(err, syscall.EAGAIN) ||
		errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EDQUOT)
}

// isTransactionQuota reports xenstored refusing to start a transaction
// because the domain has too many open.
func isTransactionQuota(err error) bool {
	var xe *xenstore.Error
	return errors.As(err, &xe) && xe.Op == "transaction_start" &&
		(errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT))
}
