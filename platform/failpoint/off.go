//go:build !failpoints

package failpoint

// Hit does nothing: the binary was built without the tag failpoints.
func Hit(string) {}

// Enabled reports whether the binary was built with failpoints.
const Enabled = false
