package mtls

import "time"

// IssueRaw issues a certificate whose URI SAN is uri as given, for tests
// of identities that are not GoodGo services ("" for none).
func (ca *CA) IssueRaw(uri, commonName string, ttl time.Duration) (Issued, error) {
	return ca.issue(uri, commonName, nil, ttl)
}
