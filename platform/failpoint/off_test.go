//go:build !failpoints

package failpoint_test

import (
	"testing"

	"github.com/goodgo/goodgo/platform/failpoint"
)

// TestHitIsANoOpWithoutTheTag arms a point and passes it: without the build
// tag nothing reads the environment.
func TestHitIsANoOpWithoutTheTag(t *testing.T) {
	t.Setenv(failpoint.Env, "test.point=1")
	failpoint.Hit("test.point")
	if failpoint.Enabled {
		t.Fatal("Enabled without the tag")
	}
}
