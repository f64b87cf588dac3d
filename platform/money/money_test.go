package money_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/money"
)

func TestKnown(t *testing.T) {
	for _, c := range strings.Split(money.Accepted, ", ") {
		require.True(t, money.Known(c), c)
	}
	for _, c := range []string{"", "usd", "XAU", "USD "} {
		require.False(t, money.Known(c), c)
	}
}
