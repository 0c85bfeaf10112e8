package vchan

import (
	"strings"
	"syscall"
	"testing"

	"github.com/vchan-go/vchan/internal/xenstore"
)

// TestQuotaErrorsOfBothDaemons: C xenstored refuses a domain over its
// quotas with ENOSPC (transactions, nodes) or E2BIG (watches), oxenstored
// with EQUOTA (EDQUOT here, see xswire.QuotaName). Each is a shortage that
// Listen and Accept retry, and each message names the quota.
func TestQuotaErrorsOfBothDaemons(t *testing.T) {
	for _, tc := range []struct {
		op    string
		errno syscall.Errno
		want  string // in the explained message
		txn   bool   // a transaction quota: publishing retries it
	}{
		{"transaction_start", syscall.ENOSPC, "transaction quota", true},
		{"transaction_start", syscall.EDQUOT, "transaction quota", true},
		{"watch", syscall.E2BIG, "watch quota", false},
		{"watch", syscall.EDQUOT, "watch quota", false},
		{"write", syscall.ENOSPC, "quota reached", false},
		{"write", syscall.EDQUOT, "oxenstored", false},
	} {
		err := error(&xenstore.Error{Op: tc.op, Path: "/local/domain/1/data/x", Err: tc.errno})
		if !isXenstoreQuota(err) || !isShortage(err) {
			t.Errorf("%s %v: isXenstoreQuota %v, isShortage %v; want both", tc.op, tc.errno, isXenstoreQuota(err), isShortage(err))
		}
		if got := isTransactionQuota(err); got != tc.txn {
			t.Errorf("%s %v: isTransactionQuota = %v, want %v", tc.op, tc.errno, got, tc.txn)
		}
		if msg := explainXenstore(err).Error(); !strings.Contains(msg, tc.want) {
			t.Errorf("%s %v: %q does not say %q", tc.op, tc.errno, msg, tc.want)
		}
	}
	if err := error(&xenstore.Error{Op: "transaction_start", Err: syscall.EINVAL}); isShortage(err) || isTransactionQuota(err) {
		t.Error("EINVAL taken for a quota")
	}
}
