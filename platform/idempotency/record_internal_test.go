package idempotency

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRecordRoundTrip(t *testing.T) {
	owner, fp := NewOwner(), []byte("0123456789abcdef0123456789abcdef")
	claim, err := parseRecord(string(claimValue(owner, fp)))
	require.NoError(t, err)
	require.Equal(t, rawRecord{state: stateInProgress, owner: owner, fingerprint: string(fp)}, claim)

	for _, c := range []struct{ name, st, r string }{
		{"a response", "sealed status", "sealed response"},
		{"no response", "sealed status", ""},
		{"a status longer than a byte's count", strings.Repeat("s", 300), "r"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// What the complete script stores: 'c', the claim's owner
			// and fingerprint, the completion.
			stored := "c" + string(claimValue(owner, fp)[1:]) + string(completion([]byte(c.st), []byte(c.r)))
			done, err := parseRecord(stored)
			require.NoError(t, err)
			require.Equal(t, rawRecord{state: stateCompleted, owner: owner, fingerprint: string(fp), st: c.st, r: c.r}, done)
			require.Equal(t, stored, string(claim.completedWith([]byte(c.st), []byte(c.r))), "a reseal writes what Complete wrote")
		})
	}
}

func TestParseRecordRefusesWhatIsNotARecord(t *testing.T) {
	owner := NewOwner()
	valid := string(claimValue(owner, []byte("fp")))
	for name, v := range map[string]string{
		"empty":                             "",
		"unknown state":                     "x" + valid[1:],
		"owner longer than the value":       "p\x40abc",
		"no fingerprint":                    valid[:2+len(owner)],
		"fingerprint cut short":             valid[:len(valid)-1],
		"bytes after a claim":               valid + "x",
		"completed without a status":        "c" + valid[1:],
		"status longer than the value":      "c" + valid[1:] + "\x05abc",
		"a legacy hash's state field":       "c",
		"a length not in its shortest form": "c" + valid[1:] + "\x80\x00",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseRecord(v)
			require.ErrorIs(t, err, errCorrupt)
		})
	}
}

func TestCheckFields(t *testing.T) {
	require.NoError(t, checkFields(NewOwner(), make([]byte, 32)))
	require.ErrorContains(t, checkFields("", nil), "empty owner")
	require.ErrorContains(t, checkFields(strings.Repeat("o", 256), nil), "owner token of 256 bytes")
	require.ErrorContains(t, checkFields("o", make([]byte, 256)), "fingerprint of 256 bytes")
}

// FuzzParseRecord: whatever Redis holds, parsing never panics, and a
// record it accepts is written back byte for byte.
func FuzzParseRecord(f *testing.F) {
	owner := NewOwner()
	claim := claimValue(owner, []byte("fingerprint"))
	f.Add(string(claim))
	f.Add("c" + string(claim[1:]) + string(completion([]byte("st"), []byte("r"))))
	f.Add("c\x00\x00\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01")
	f.Fuzz(func(t *testing.T, v string) {
		rec, err := parseRecord(v)
		if err != nil {
			return
		}
		again := string(claimValue(rec.owner, []byte(rec.fingerprint)))
		if rec.state == stateCompleted {
			again = string(rec.completedWith([]byte(rec.st), []byte(rec.r)))
		}
		if again != v {
			t.Fatalf("parsed %q as %+v, which encodes as %q", v, rec, again)
		}
	})
}
