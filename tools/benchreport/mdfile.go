package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

const (
	beginMarker = "<!-- bench:begin -->"
	endMarker   = "<!-- bench:end -->"
)

// docIntro starts docs/benchmarks.md when the file does not exist yet.
const docIntro = `# Benchmarks

` + "`make bench`" + ` runs the benchmarks below against the real PostgreSQL, Redis and
development broker on this machine, several times each (` + "`BENCH_COUNT`" + `,
default 5), and sets their medians beside the seed's "Performance
Characteristics" table (the seed document, data-consistency-patterns, is
not part of this repository: its figures are in the first columns). Raw
` + "`go test`" + ` output goes to ` + "`bin/bench/*.txt`" + `; the tool is
` + "`tools/benchreport`" + `.

Everything between the two markers below is rewritten by every full run;
write notes outside them. ` + "`make bench BENCH_ONLY=saga`" + ` runs one suite and
leaves this file alone; ` + "`bin/benchreport -render`" + ` rewrites the section from
the last run's raw output. The development machine is small (2 cores) and
shared: the figures are lower bounds, and the spread in the details shows
how noisy a run was.

The outbox relay's own benchmarks, with other batch and worker settings
and the reasoning behind the defaults, are in
[benchmarks-relay.md](benchmarks-relay.md).
`

// ReplaceBetweenMarkers returns doc with everything between beginMarker
// and endMarker replaced by content, leaving the rest as it was. A doc
// without the markers gets them, with content, appended; a doc with only
// one of them, or with them out of order, is an error, so that text a
// human wrote is never overwritten by guesswork.
func ReplaceBetweenMarkers(doc, content string) (string, error) {
	content = strings.TrimRight(content, "\n") + "\n"
	bi := strings.Index(doc, beginMarker)
	ei := strings.Index(doc, endMarker)
	switch {
	case bi < 0 && ei < 0:
		if doc != "" && !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		if doc != "" {
			doc += "\n"
		}
		return doc + beginMarker + "\n" + content + endMarker + "\n", nil
	case bi < 0 || ei < 0:
		return "", errors.New("only one of the bench markers is present")
	case ei < bi:
		return "", errors.New("the bench markers are out of order")
	case strings.Count(doc, beginMarker) > 1 || strings.Count(doc, endMarker) > 1:
		return "", errors.New("the bench markers appear more than once")
	}
	return doc[:bi+len(beginMarker)] + "\n" + content + doc[ei:], nil
}

// updateDoc writes content between the markers of the Markdown file at
// path, creating the file with docIntro if it does not exist.
func updateDoc(path, content string) error {
	old, err := os.ReadFile(path) //nolint:gosec // G304: the path is the operator's -md flag
	switch {
	case errors.Is(err, os.ErrNotExist):
		old = []byte(docIntro)
	case err != nil:
		return err
	}
	doc, err := ReplaceBetweenMarkers(string(old), content)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, []byte(doc), 0o644) //nolint:gosec // G306: a document of the repository, readable like the rest
}
