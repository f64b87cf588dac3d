package postgres

import "testing"

func TestSpanName(t *testing.T) {
	for stmt, want := range map[string]string{
		"-- name: InsertEvents :exec\nINSERT INTO outbox (lane) SELECT 1": "InsertEvents",
		"  select 1":                         "SELECT",
		"-- a comment\n\nupdate t set a = 1": "UPDATE",
		"":                                   "SQL",
	} {
		if got := SpanName(stmt); got != want {
			t.Errorf("SpanName(%q) = %q, want %q", stmt, got, want)
		}
	}
}
