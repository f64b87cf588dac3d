package outbox

// UseCopyFrom switches w to the COPY insert strategy, for the tests and
// benchmarks that compare it with the default unnest INSERT.
func UseCopyFrom(w *Writer) { w.copyFrom = true }
