package keyring

// IsSealedValue reports whether value has the form of a sealed value (it
// may still fail to open): for the tests of that form.
func IsSealedValue(value []byte) bool {
	_, _, err := splitValue(value)
	return err == nil
}

// ValueKeyID returns the key id of a sealed value without opening it.
func ValueKeyID(value []byte) (string, error) {
	kid, _, err := splitValue(value)
	return kid, err
}
