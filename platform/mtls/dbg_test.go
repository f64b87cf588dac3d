package mtls_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

func TestDbg(t *testing.T) {
	ca := newCA(t, "test CA")
	files := writeIdentity(t, t.TempDir(), issue(t, ca, "payment"), ca.PEM)
	src := load(t, files, jsonLogger(&syncBuffer{}))
	addr, _ := startServer(t, src)
	orchestrator := loadService(t, ca, "orchestrator")
	renewed := issue(t, ca, "payment")
	want := parseCert(t, renewed.CertPEM).SerialNumber
	t.Log("want", want, "old", serialOf(src))
	_ = renewed.WriteFiles(files.Cert, files.Key)
	for i := 0; i < 40; i++ {
		p, err := call(t, addr, orchestrator.ClientCredentials("payment"))
		if status.Code(err) != reached { t.Log(time.Now(), err); } else {
		t.Log(time.Now(), p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].SerialNumber) }
		time.Sleep(50 * time.Millisecond)
	}
	t.Log("src", serialOf(src))
}
