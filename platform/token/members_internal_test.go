package token

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMembers: one JSON object, each name once however it is spelt; every
// other input refused.
func TestMembers(t *testing.T) {
	for _, tc := range []struct {
		in    string
		names []string // nil: refused
	}{
		{`{}`, []string{}},
		{` { } `, []string{}},
		{`{"alg":"ES256","typ":"JWT","x5c":["AAAA"]}`, []string{"alg", "typ", "x5c"}},
		{`{"a":[1,{"b":"}"}],"c":null}`, []string{"a", "c"}},
		{`{"a":"\"","b":true}`, []string{"a", "b"}},
		{`{"é":1}`, []string{"é"}},
		{`{"aud":"x","exp":1.5e9}`, []string{"aud", "exp"}},
		{`{"a":-0.5E+3 }`, []string{"a"}},
		{`{"a":1,"a":2}`, nil},
		{`{"\u0061lg":"x","alg":"y"}`, nil},
		{`{"a":1}{}`, nil},
		{`{"a":1} x`, nil},
		{`[1]`, nil},
		{`{"a":1,}`, nil},
		{`{"a" 1}`, nil},
		{`{"a":tr"ue"}`, nil},
		{`{"a":[1}`, nil},
		{`{"a":"b\`, nil},
		{"{\"a\x01\":1}", nil},
		{`{,}`, nil},
		{``, nil},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got := []string{}
			err := members([]byte(tc.in), func(name string, _ []byte) error {
				got = append(got, name)
				return nil
			})
			if tc.names == nil {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.names, got)
		})
	}
}
