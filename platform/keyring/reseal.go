package keyring

import (
	"context"
	"errors"
)

// ResealStats counts what a reseal did.
type ResealStats struct {
	// Scanned values; Resealed: values now under the active key that were
	// under another key or in the clear; Failed: values that did not open
	// (their errors are joined into the reseal's error).
	Scanned, Resealed, Failed int
}

// Add adds o's counts to s.
func (s *ResealStats) Add(o ResealStats) {
	s.Scanned += o.Scanned
	s.Resealed += o.Resealed
	s.Failed += o.Failed
}

// Pages is a store of sealed values read in pages of rows R ordered by a
// key K, for Reseal.
type Pages[K, R any] struct {
	// Page returns the rows after the key given (the zero K to start), in
	// key order; fewer than Size rows means the last page.
	Page func(ctx context.Context, after K) ([]R, error)
	// Size is the page size Page uses.
	Size int
	// Key is a row's key.
	Key func(R) K
	// Current reports that a row is sealed under the active key already.
	Current func(R) bool
	// Reseal seals a row's value under the active key if the row is
	// unchanged since read and reports whether it replaced it.
	Reseal func(ctx context.Context, row R) (bool, error)
}

// Reseal walks a store once in key order and reseals every row that is not
// under the active key. A row that fails is counted and its error kept;
// the walk goes on. It stops at the first error of Page.
func Reseal[K, R any](ctx context.Context, p Pages[K, R]) (ResealStats, error) {
	var (
		stats ResealStats
		errs  []error
		after K
	)
	for {
		rows, err := p.Page(ctx, after)
		if err != nil {
			return stats, errors.Join(append(errs, err)...)
		}
		for _, row := range rows {
			stats.Scanned++
			after = p.Key(row)
			if p.Current(row) {
				continue
			}
			done, err := p.Reseal(ctx, row)
			switch {
			case err != nil:
				stats.Failed++
				errs = append(errs, err)
			case done:
				stats.Resealed++
			}
		}
		if len(rows) < p.Size {
			return stats, errors.Join(errs...)
		}
	}
}
