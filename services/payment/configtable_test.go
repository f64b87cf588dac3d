package main

import (
	"testing"

	"github.com/goodgo/goodgo/platform/config/configtable"
)

// The README's configuration table lists every variable this binary reads,
// and none it does not.
func TestConfigurationTableListsEveryVariable(t *testing.T) {
	t.Parallel()
	configtable.Check(t, "payment", func(lookup func(string) (string, bool)) { _, _ = loadConfig(lookup) })
}
