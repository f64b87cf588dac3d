package servicetest_test

import (
	"testing"

	"github.com/goodgo/goodgo/platform/servicetest"
)

// TestBinariesLinkNoTestCode checks every binary of the workspace: none
// may carry a test helper (a package importing testing) into production.
func TestBinariesLinkNoTestCode(t *testing.T) {
	t.Parallel()
	for _, pkg := range []string{
		"github.com/goodgo/goodgo/services/order",
		"github.com/goodgo/goodgo/services/payment",
		"github.com/goodgo/goodgo/services/inventory",
		"github.com/goodgo/goodgo/services/orchestrator",
		"github.com/goodgo/goodgo/services/outbox-relay",
		"github.com/goodgo/goodgo/devbroker",
		"github.com/goodgo/goodgo/goodgoctl",
		"github.com/goodgo/goodgo/loadgen",
	} {
		t.Run(pkg, func(t *testing.T) {
			t.Parallel()
			servicetest.RequireNoTestCode(t, pkg)
		})
	}
}
