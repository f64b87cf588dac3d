package sku_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/sku"
)

func TestValid(t *testing.T) {
	for _, s := range []string{"A", "SKU-1", "9-LIVES", strings.Repeat("X", sku.MaxLen)} {
		require.True(t, sku.Valid(s), s)
	}
	for _, s := range []string{"", "-SKU", "sku-1", "SKU 1", "SKU_1", "SKÜ", strings.Repeat("X", sku.MaxLen+1)} {
		require.False(t, sku.Valid(s), s)
	}
}
