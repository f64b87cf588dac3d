package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// topLevelNames reads the member names of the JSON object b with
// encoding/json's tokenizer, refusing anything but one valid object.
func topLevelNames(b []byte) ([]string, error) {
	if !json.Valid(b) {
		return nil, errors.New("not JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not an object")
	}
	var names []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		names = append(names, t.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more")
	}
	return names, nil
}

// FuzzMembers checks the hand-written JSON object walker of assertions
// against encoding/json: it accepts exactly the valid JSON objects without
// a member twice, and reads the same names.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{
		`{}`, ` { } `, `{"alg":"ES256","typ":"JWT","x5c":["AAAA"]}`, `{"a":1,"a":2}`, `{"a":[1,{"b":"}"}],"c":null}`,
		`{"\u0061lg":"x","alg":"y"}`, `{"a":"\"","b":true}`, `{"a":1}{}`, `[1]`, `{"a":1,}`, `{"a" 1}`, `{"a":tr"ue"}`,
		`{"a":[1}`, `{"a":"b\`, `{"é":1}`, "{\"a\x01\":1}", `{"aud":"x","exp":1.5e9}`, `{"a":-0.5E+3 }`, `{,}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got []string
		err := members(b, func(name string, v []byte) error {
			got = append(got, name)
			return skip(v)
		})
		want, werr := topLevelNames(b)
		dup := false
		for i, n := range want {
			dup = dup || slices.Contains(want[:i], n)
		}
		if werr != nil || dup {
			require.Error(t, err, "accepted %q", b)
			return
		}
		require.NoError(t, err, "refused %q", b)
		require.Equal(t, want, got)
	})
}
