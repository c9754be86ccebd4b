package eventstore

import (
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func TestBatchRejectionsAreRetryable(t *testing.T) {
	for _, code := range []jetstream.ErrorCode{errCodeBatchIncomplete, errCodeBatchTooManyInflight} {
		err := fmt.Errorf("commit: %w", &jetstream.APIError{Code: 400, ErrorCode: code, Description: "atomic publish"})
		if !isUnavailable(err) || isConflict(err) {
			t.Errorf("code %d: unavailable=%v conflict=%v", code, isUnavailable(err), isConflict(err))
		}
	}
	if isUnavailable(&jetstream.APIError{Code: 400, ErrorCode: errCodeWrongLastSeq}) {
		t.Error("a wrong last sequence is a conflict, not an outage")
	}
}
