package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReplaceBetweenMarkers(t *testing.T) {
	t.Parallel()
	b, e := beginMarker, endMarker
	tests := []struct {
		name, doc, content, want string
		wantErr                  bool
	}{
		{
			name:    "replaces between the markers, keeps the rest byte for byte",
			doc:     "# T\n\nnotes  \n" + b + "\nold table\nold\n" + e + "\ntrailing notes\n",
			content: "new table\n",
			want:    "# T\n\nnotes  \n" + b + "\nnew table\n" + e + "\ntrailing notes\n",
		},
		{
			name: "content gets exactly one final newline",
			doc:  b + e, content: "x\n\n\n",
			want: b + "\nx\n" + e,
		},
		{
			name: "appends the markers to a doc without them",
			doc:  "# T\nnotes", content: "x",
			want: "# T\nnotes\n\n" + b + "\nx\n" + e + "\n",
		},
		{
			name: "an empty doc gets only the markers",
			doc:  "", content: "x",
			want: b + "\nx\n" + e + "\n",
		},
		{name: "only the begin marker", doc: "a\n" + b + "\nb\n", content: "x", wantErr: true},
		{name: "only the end marker", doc: "a\n" + e + "\n", content: "x", wantErr: true},
		{name: "out of order", doc: e + "\n" + b + "\n", content: "x", wantErr: true},
		{name: "twice", doc: b + e + b + e, content: "x", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ReplaceBetweenMarkers(tc.doc, tc.content)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestUpdateDocCreatesWithIntro(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := updateDoc(path, "table one"); err != nil {
		t.Fatal(err)
	}
	if err := updateDoc(path, "table two"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	if !strings.HasPrefix(got, docIntro) || !strings.Contains(got, "benchmarks-relay.md") {
		t.Errorf("intro missing:\n%s", got)
	}
	if !strings.HasSuffix(got, beginMarker+"\ntable two\n"+endMarker+"\n") || strings.Contains(got, "table one") {
		t.Errorf("second update did not replace the first:\n%s", got)
	}
}
