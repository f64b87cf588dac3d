package generator

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseMix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    Mix
		wantErr string
	}{
		{in: DefaultMix, want: Mix{{KindGood, 70}, {KindDecline, 10}, {KindOutOfStock, 10}, {KindHot, 10}}},
		{in: " good = 1 , hot=0,", want: Mix{{KindGood, 1}, {KindHot, 0}}},
		{in: "decline=3", want: Mix{{KindDecline, 3}}},
		{in: "", wantErr: "at least one weight must be positive"},
		{in: "good=0", wantErr: "at least one weight must be positive"},
		{in: "good", wantErr: `"good": want kind=weight`},
		{in: "great=1", wantErr: `unknown kind "great"`},
		{in: "good=1,good=2", wantErr: `"good" given twice`},
		{in: "good=-1", wantErr: "must be a non-negative integer"},
		{in: "good=1.5", wantErr: "must be a non-negative integer"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseMix(tc.in)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			again, err := ParseMix(got.String())
			require.NoError(t, err)
			require.Equal(t, got, again, "String round-trips")
		})
	}
}

func TestPickerKeepsTheProportionsInEveryCycle(t *testing.T) {
	t.Parallel()
	m, err := ParseMix("good=7,decline=1,oos=1,hot=1,")
	require.NoError(t, err)
	p := newPicker(m)
	for cycle := range 3 {
		got := map[Kind]int{}
		for range 10 {
			got[p.next()]++
		}
		require.Equal(t, map[Kind]int{KindGood: 7, KindDecline: 1, KindOutOfStock: 1, KindHot: 1}, got, "cycle %d", cycle)
	}
}

func TestPickerInterleaves(t *testing.T) {
	t.Parallel()
	p := newPicker(Mix{{KindGood, 1}, {KindDecline, 1}, {KindHot, 0}})
	var got []Kind
	for range 4 {
		got = append(got, p.next())
	}
	require.Equal(t, []Kind{KindGood, KindDecline, KindGood, KindDecline}, got, "never a zero-weight kind, never a run of one")
}

func TestRetriedIsTheFractionSpreadEvenly(t *testing.T) {
	t.Parallel()
	for _, f := range []float64{0, 0.1, 0.25, 1.0 / 3, 1} {
		n := 0
		for i := range 300 {
			if retried(i, f) {
				n++
			}
		}
		require.Equal(t, int(300*f), n, "fraction %v", f)
	}
	require.False(t, retried(0, 0.1))
	require.True(t, retried(9, 0.1))
}

func TestExpectedOutcomes(t *testing.T) {
	t.Parallel()
	require.Equal(t, "ORDER_STATUS_CONFIRMED", KindGood.Expected().String())
	require.Equal(t, "ORDER_STATUS_CONFIRMED", KindHot.Expected().String())
	require.Equal(t, "ORDER_STATUS_CANCELLED", KindDecline.Expected().String())
	require.Equal(t, "ORDER_STATUS_CANCELLED", KindOutOfStock.Expected().String())
}
