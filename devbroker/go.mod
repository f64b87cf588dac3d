module github.com/goodgo/goodgo/devbroker

go 1.26.0

require (
	github.com/goodgo/goodgo/platform v0.0.0-00010101000000-000000000000
	github.com/segmentio/kafka-go v0.4.51
	github.com/stretchr/testify v1.12.1
	github.com/twmb/franz-go/pkg/kfake v0.0.0-20260918054303-01f206a7e32c
	github.com/twmb/franz-go/pkg/kmsg v1.15.1
)

require (
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/twmb/franz-go v1.22.3 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
)

// The workspace (go.work) resolves this for builds; the replace lets
// `go mod tidy` work per module, which ignores go.work.
replace github.com/goodgo/goodgo/platform => ../platform
